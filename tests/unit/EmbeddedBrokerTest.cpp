#include "broker/EmbeddedBroker.h"
#include "domain/Clock.h"

#include "TestStore.h"

#include <catch2/catch.hpp>

#include <memory>
#include <thread>

using namespace orderpay;
using namespace std::chrono;

namespace {

/// A queue on a real database.
struct Queue : test::TestStore {
    WorkSettings work;
    milliseconds leaseTime = minutes(1);
    std::unique_ptr<EmbeddedBroker> broker;

    Queue()
    {
        work.retryBackoff = milliseconds(200);
        startBroker();
    }

    void startBroker()
    {
        broker = std::make_unique<EmbeddedBroker>(store->queue(), work, leaseTime);
        broker->start();
    }

    void open() override
    {
        TestStore::open();  // (the base constructor runs the base open(), without a broker)
        startBroker();
    }

    void close() override
    {
        broker->stop();
        broker.reset();
        TestStore::close();
    }

    void publish(const std::string& body)
    {
        committer().write([&](sql::Statements& w) {
            const std::int64_t at = clock::nowMillis();
            w("INSERT INTO messages (queue, body, due_at, created_at) VALUES ('orders', ?, ?, ?)").exec(body, at, at);
        });
        broker->notifyPublished("orders");
    }

    std::optional<Delivery> fetch(milliseconds timeout)
    {
        auto ds = broker->fetchSome("orders", 1, timeout);
        if (ds.empty()) return std::nullopt;
        return ds.front();
    }

    /// Acks do not wait for their commit: a write queued behind them does.
    void flush()
    {
        committer().write([](sql::Statements&) {});
    }

    /// The orders queue as the store counts it now.
    QueueDepth depth() { return store->queue().depths()[kOrdersQueue]; }
};

}  // namespace

TEST_CASE("a message is delivered once, and gone after its ack", "[queue]")
{
    Queue q;
    q.publish("m1");
    auto d = q.fetch(seconds(2));
    REQUIRE(d);
    CHECK(d->body == "m1");
    CHECK(d->attempt == 1);
    CHECK_FALSE(q.fetch(milliseconds(50)));  // leased: nobody else gets it
    CHECK(q.depth().inFlight == 1);
    q.broker->ack(*d);
    q.flush();
    CHECK(q.depth().inFlight == 0);
    CHECK_FALSE(q.fetch(milliseconds(50)));
}

TEST_CASE("a publish wakes a waiting consumer", "[queue]")
{
    Queue q;
    std::optional<Delivery> got;
    std::thread consumer([&] { got = q.fetch(seconds(5)); });
    q.publish("wake");
    consumer.join();
    REQUIRE(got);
    CHECK(got->body == "wake");
}

TEST_CASE("an expired lease makes the message due again, counted as an attempt", "[queue]")
{
    Queue q;
    q.broker->stop();
    q.leaseTime = milliseconds(100);
    q.startBroker();
    q.publish("m");
    auto first = q.fetch(seconds(2));
    REQUIRE(first);
    // No ack: the consumer is wedged. The lease runs out and the message
    // comes back.
    auto second = q.fetch(seconds(5));
    REQUIRE(second);
    CHECK(second->messageId == first->messageId);
    CHECK(second->attempt == 2);
    CHECK(second->redelivered());
    // The stale holder's ack is ignored; the current holder's counts.
    q.broker->ack(*first);
    q.flush();
    CHECK(q.depth().inFlight == 1);
    q.broker->ack(*second);
    q.flush();
    CHECK(q.depth().inFlight == 0);
}

TEST_CASE("retry waits out the backoff before the next delivery", "[queue]")
{
    Queue q;
    q.publish("m");
    auto d = q.fetch(seconds(2));
    REQUIRE(d);
    const auto retried = steady_clock::now();
    q.broker->retry(*d, "database busy");
    auto again = q.fetch(seconds(5));
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
    auto d = q.fetch(seconds(2));
    REQUIRE(d);
    q.broker->deadLetter(*d, "cannot be decoded");
    CHECK_FALSE(q.fetch(milliseconds(300)));
    CHECK(q.depth().dead == 1);
    std::string reason;
    q.db().localReader()("SELECT last_error FROM messages WHERE state = 'dead'").query([&](sql::Statement& row) {
        reason = row.text(0);
    });
    CHECK(reason == "cannot be decoded");
}

TEST_CASE("release hands a message back in its place, without counting the attempt", "[queue]")
{
    Queue q;
    q.publish("m");
    auto d = q.fetch(seconds(2));
    REQUIRE(d);
    q.publish("later");
    q.broker->release(*d);
    auto again = q.fetch(seconds(2));
    REQUIRE(again);
    CHECK(again->body == "m");  // ahead of the one written after it
    CHECK(again->attempt == 1);
}

TEST_CASE("a lease held by a daemon that died is delivered again after a restart", "[queue]")
{
    Queue q;
    q.publish("m");
    auto d = q.fetch(seconds(2));
    REQUIRE(d);
    q.close();  // the consumer never acked: as after SIGKILL
    q.open();
    auto again = q.fetch(seconds(2));
    REQUIRE(again);
    CHECK(again->body == "m");
    CHECK(again->attempt == 2);  // the cut-short delivery counts toward retry.max_attempts
}

TEST_CASE("one lease takes what the consumer asks for, oldest due first, in one transaction", "[queue]")
{
    Queue q;
    for (int i = 0; i < 80; ++i) q.publish("m" + std::to_string(i));
    const auto transactions = q.committer().stats().transactions;

    auto first = q.broker->fetchSome("orders", WorkSettings::kBatchSize, seconds(2));
    REQUIRE(first.size() == WorkSettings::kBatchSize);
    CHECK(first.front().body == "m0");
    CHECK(first.back().body == "m63");
    CHECK(q.committer().stats().transactions == transactions + 1);
    CHECK(q.depth().inFlight == 64);
    auto second = q.broker->fetchSome("orders", 100, seconds(2));
    CHECK(second.size() == 16);
    for (const auto& d : first) q.broker->ack(d);
    q.flush();
    CHECK(q.depth().inFlight == 16);
}

TEST_CASE("a message due later (a step's timer) is counted as delayed and delivered once due", "[queue]")
{
    Queue q;
    const std::int64_t due = clock::nowMillis() + 400;
    q.committer().write([&](sql::Statements& w) {
        w("INSERT INTO messages (queue, body, due_at, created_at) VALUES ('order-steps', 'timer', ?, ?)")
            .exec(due, clock::nowMillis());
    });
    const auto depth = q.store->queue().depths()[kOrderStepsQueue];
    CHECK(depth.delayed == 1);
    CHECK(depth.ready == 0);
    CHECK(q.broker->fetchSome("order-steps", 1, milliseconds(100)).empty());
    auto got = q.broker->fetchSome("order-steps", 1, seconds(5));
    REQUIRE(got.size() == 1);
    CHECK(clock::nowMillis() >= due);
    CHECK(got.front().body == "timer");
    CHECK(got.front().attempt == 1);
}

TEST_CASE("the broker's status comes from its monitor's last look, never from a read of its caller", "[queue]")
{
    Queue q;
    q.publish("m");
    // The monitor looks every second: the published message shows within
    // two, and status() itself reads nothing.
    const auto deadline = steady_clock::now() + seconds(5);
    std::int64_t ready = 0;
    while (steady_clock::now() < deadline && (ready = q.broker->status().depths[kOrdersQueue].ready) != 1)
        std::this_thread::sleep_for(milliseconds(20));  // poll interval, bounded by the deadline
    CHECK(ready == 1);
    CHECK(q.broker->status().state == BrokerStatus::State::Ok);
}
