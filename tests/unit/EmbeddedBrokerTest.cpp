#include "broker/EmbeddedBroker.h"
#include "domain/Clock.h"
#include "store/OrderStore.h"

#include "TempDir.h"

#include <catch2/catch.hpp>

#include <memory>

using namespace orderpay;
using namespace std::chrono;
using namespace Poco::Data::Keywords;

namespace {

/// A queue on a real database.
struct Queue : test::TestDatabase {
    WorkSettings work;
    std::unique_ptr<EmbeddedBroker> broker;

    Queue()
    {
        work.retryBackoff = milliseconds(200);
        startBroker();
    }

    void startBroker()
    {
        broker = std::make_unique<EmbeddedBroker>(*db, *committer, work);
        broker->start();
    }

    void open() override
    {
        TestDatabase::open();  // (the base constructor runs the base open(), without a broker)
        startBroker();
    }

    void close() override
    {
        broker->stop();
        broker.reset();
        TestDatabase::close();
    }

    void publish(const std::string& body)
    {
        committer->write([&](Poco::Data::Session& s) {
            const Poco::Int64 at = clock::nowMillis();
            s << "INSERT INTO messages (queue, body, due_at, created_at) VALUES ('orders', ?, ?, ?)", useRef(body),
                useRef(at), useRef(at), now;
        });
        broker->notifyPublished("orders");
    }
};

}  // namespace

TEST_CASE("a message is delivered once, and gone after its ack", "[queue]")
{
    Queue q;
    q.publish("m1");
    auto d = q.broker->fetch("orders", seconds(2));
    REQUIRE(d);
    CHECK(d->body == "m1");
    CHECK(d->attempt == 1);
    CHECK_FALSE(q.broker->fetch("orders", milliseconds(50)));  // leased: nobody else gets it
    CHECK(q.broker->depths()["orders"].inFlight == 1);
    q.broker->ack(*d);
    CHECK(q.broker->depths()["orders"].inFlight == 0);
    CHECK_FALSE(q.broker->fetch("orders", milliseconds(50)));
}

TEST_CASE("a publish wakes a waiting consumer", "[queue]")
{
    Queue q;
    std::optional<Delivery> got;
    std::thread consumer([&] { got = q.broker->fetch("orders", seconds(5)); });
    q.publish("wake");
    consumer.join();
    REQUIRE(got);
    CHECK(got->body == "wake");
}

TEST_CASE("an expired lease makes the message due again, counted as an attempt", "[queue]")
{
    Queue q;
    q.broker->setLeaseTime(milliseconds(100));
    q.publish("m");
    auto first = q.broker->fetch("orders", seconds(2));
    REQUIRE(first);
    // No ack: the consumer is wedged. The lease runs out and the message
    // comes back.
    auto second = q.broker->fetch("orders", seconds(5));
    REQUIRE(second);
    CHECK(second->messageId == first->messageId);
    CHECK(second->attempt == 2);
    CHECK(second->redelivered());
    // The stale holder's ack is ignored; the current holder's counts.
    q.broker->ack(*first);
    CHECK(q.broker->depths()["orders"].inFlight == 1);
    q.broker->ack(*second);
    CHECK(q.broker->depths()["orders"].inFlight == 0);
}

TEST_CASE("retry waits out the backoff before the next delivery", "[queue]")
{
    Queue q;
    q.publish("m");
    auto d = q.broker->fetch("orders", seconds(2));
    REQUIRE(d);
    const auto retried = steady_clock::now();
    q.broker->retry(*d, "database busy");
    auto again = q.broker->fetch("orders", seconds(5));
    REQUIRE(again);
    CHECK(steady_clock::now() - retried >= milliseconds(190));
    CHECK(again->attempt == 2);
}

TEST_CASE("backoff doubles per attempt and is capped", "[queue]")
{
    CHECK(EmbeddedBroker::backoff(milliseconds(1000), 1) == milliseconds(1000));
    CHECK(EmbeddedBroker::backoff(milliseconds(1000), 2) == milliseconds(2000));
    CHECK(EmbeddedBroker::backoff(milliseconds(1000), 4) == milliseconds(8000));
    CHECK(EmbeddedBroker::backoff(milliseconds(1000), 60) == minutes(5));
    CHECK(EmbeddedBroker::backoff(milliseconds(0), 3) == milliseconds(0));
}

TEST_CASE("a dead-lettered message stays, with its reason, and is not delivered", "[queue]")
{
    Queue q;
    q.publish("poison");
    auto d = q.broker->fetch("orders", seconds(2));
    REQUIRE(d);
    q.broker->deadLetter(*d, "cannot be decoded");
    CHECK_FALSE(q.broker->fetch("orders", milliseconds(300)));
    CHECK(q.broker->depths()["orders"].dead == 1);
    std::string reason;
    Poco::Data::Session s = q.db->reader();
    s << "SELECT last_error FROM messages WHERE state = 'dead'", into(reason), now;
    CHECK(reason == "cannot be decoded");
}

TEST_CASE("release hands a message back without counting the attempt", "[queue]")
{
    Queue q;
    q.publish("m");
    auto d = q.broker->fetch("orders", seconds(2));
    REQUIRE(d);
    q.broker->release(*d);
    auto again = q.broker->fetch("orders", seconds(2));
    REQUIRE(again);
    CHECK(again->attempt == 1);
}

TEST_CASE("a lease held by a daemon that died is delivered again after a restart", "[queue]")
{
    Queue q;
    q.publish("m");
    auto d = q.broker->fetch("orders", seconds(2));
    REQUIRE(d);
    q.close();  // the consumer never acked: as after SIGKILL
    q.open();
    auto again = q.broker->fetch("orders", seconds(2));
    REQUIRE(again);
    CHECK(again->body == "m");
    CHECK(again->attempt == 2);  // the cut-short delivery counts toward retry.max_attempts
}

TEST_CASE("with instant processing one lease takes a batch, and stop gives back what was not handed out", "[queue]")
{
    Queue q;
    q.broker->stop();
    q.work.processingTime = milliseconds(0);
    q.startBroker();
    for (int i = 0; i < 80; ++i) q.publish("m" + std::to_string(i));
    const auto transactions = q.committer->stats().transactions;

    auto first = q.broker->fetchSome("orders", 10, seconds(2));
    REQUIRE(first.size() == 10);
    CHECK(first.front().body == "m0");
    CHECK(first.back().body == "m9");
    // One lease transaction took a batch of them.
    const auto batch = static_cast<std::int64_t>(q.work.batchSize());
    REQUIRE(batch == 64);
    CHECK(q.committer->stats().transactions == transactions + 1);
    CHECK(q.broker->depths()["orders"].inFlight == batch);
    auto second = q.broker->fetchSome("orders", 100, seconds(2));
    CHECK(static_cast<std::int64_t>(second.size()) == batch - 10);  // the rest of that lease, no new one
    CHECK(q.committer->stats().transactions == transactions + 1);
    for (const auto& d : first) q.broker->ack(d);

    // 54 leased ahead and handed out, 16 left: the next lease takes them.
    auto third = q.broker->fetchSome("orders", 3, seconds(2));
    REQUIRE(third.size() == 3);
    CHECK(q.broker->depths()["orders"].inFlight == 54 + 16);

    // Stopping gives back the 13 leased but never handed out, uncounted.
    q.broker->stop();
    Poco::Data::Session s = q.db->reader();
    Poco::Int64 ready = 0, counted = 0;
    s << "SELECT COUNT(*), SUM(attempts) FROM messages WHERE state = 'ready'", into(ready), into(counted), now;
    CHECK(ready == 13);
    CHECK(counted == 0);
}
