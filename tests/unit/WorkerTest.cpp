#include "broker/EmbeddedBroker.h"
#include "domain/Clock.h"
#include "domain/Errors.h"
#include "work/ConsumerTask.h"

#include "TestStore.h"

#include <Poco/TaskManager.h>
#include <Poco/ThreadPool.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

using namespace orderpay;
using namespace std::chrono;

namespace {

/// A handler that fails as told, and records what happened to it.
class ScriptedHandler : public MessageHandler {
public:
    enum class Mode { Succeed, FailTransient, FailPermanent };
    explicit ScriptedHandler(Mode mode) : mode_(mode) {}

    void handle(const Delivery& d) override
    {
        attempts.push_back(d.attempt);
        if (mode_ == Mode::FailTransient) throw std::runtime_error("downstream timed out");
        if (mode_ == Mode::FailPermanent) throw PoisonMessage("cannot decode");
        handled = true;
    }
    void onDeadLetter(const Delivery&, const std::string& reason) override
    {
        std::lock_guard lock(mutex);
        deadReason = reason;
    }
    std::string reason()
    {
        std::lock_guard lock(mutex);
        return deadReason;
    }

    std::vector<int> attempts;  // only touched by the one consumer thread
    std::atomic<bool> handled{false};

private:
    Mode mode_;
    std::mutex mutex;
    std::string deadReason;
};

struct Rig : test::TestStore {
    WorkSettings work;
    std::unique_ptr<EmbeddedBroker> broker;

    Rig()
    {
        work.retryBackoff = milliseconds(10);
        startBroker();
        committer().write([](sql::Statements& w) {
            const std::int64_t at = clock::nowMillis();
            w("INSERT INTO messages (queue, body, due_at, created_at) VALUES ('orders', 'm', ?, ?)").exec(at, at);
        });
    }

    void startBroker()
    {
        broker = std::make_unique<EmbeddedBroker>(store->queue(), work, minutes(1));
        broker->start();
    }

    /// Runs one consumer until `done` holds or the deadline passes.
    template <typename Pred>
    bool runUntil(MessageHandler& handler, int maxAttempts, Pred done)
    {
        Poco::ThreadPool pool(1, 1);
        Poco::TaskManager tasks(pool);
        tasks.start(new ConsumerTask("test", *broker, {"orders"}, handler, maxAttempts));
        const auto deadline = steady_clock::now() + seconds(10);
        bool ok = false;
        while (steady_clock::now() < deadline && !(ok = done())) std::this_thread::sleep_for(milliseconds(10));
        tasks.cancelAll();
        broker->stop();
        tasks.joinAll();
        return ok;
    }

    QueueDepth depth() { return store->queue().depths()[kOrdersQueue]; }
};

}  // namespace

TEST_CASE("a handled message is acked", "[worker]")
{
    Rig rig;
    ScriptedHandler handler(ScriptedHandler::Mode::Succeed);
    REQUIRE(rig.runUntil(handler, 5, [&] { return rig.depth().ready + rig.depth().inFlight == 0; }));
    CHECK(handler.handled);
    CHECK(handler.attempts == std::vector<int>{1});
}

TEST_CASE("a failing message is retried, then dead-lettered after retry.max_attempts", "[worker]")
{
    Rig rig;
    ScriptedHandler handler(ScriptedHandler::Mode::FailTransient);
    REQUIRE(rig.runUntil(handler, 3, [&] { return rig.depth().dead == 1; }));
    CHECK(handler.attempts == std::vector<int>{1, 2, 3});
    CHECK_THAT(handler.reason(), Catch::Matchers::Contains("downstream timed out"));
}

TEST_CASE("a poison message is dead-lettered at once", "[worker]")
{
    Rig rig;
    ScriptedHandler handler(ScriptedHandler::Mode::FailPermanent);
    REQUIRE(rig.runUntil(handler, 5, [&] { return rig.depth().dead == 1; }));
    CHECK(handler.attempts == std::vector<int>{1});
    CHECK_THAT(handler.reason(), Catch::Matchers::Contains("cannot decode"));
}

TEST_CASE("deliveries cut short by crashes count toward retry.max_attempts", "[worker]")
{
    Rig rig;
    // Three deliveries that never finished (the daemon died each time).
    rig.committer().write([](sql::Statements& w) { w("UPDATE messages SET attempts = 3").exec(); });
    ScriptedHandler handler(ScriptedHandler::Mode::Succeed);
    REQUIRE(rig.runUntil(handler, 3, [&] { return rig.depth().dead == 1; }));
    CHECK(handler.attempts.empty());  // never handed to the handler again
    CHECK_THAT(handler.reason(), Catch::Matchers::Contains("retry.max_attempts"));
}

namespace {

/// Takes messages in batches; a body "poison" fails for good.
class BatchHandler : public MessageHandler {
public:
    void handle(const Delivery& d) override { handleSome({d}); }
    std::size_t batchSize() const override { return 8; }
    std::vector<std::exception_ptr> handleSome(const std::vector<Delivery>& ds) override
    {
        std::vector<std::exception_ptr> errors(ds.size());
        std::lock_guard lock(mutex);
        batches.push_back(ds.size());
        for (std::size_t i = 0; i < ds.size(); ++i) {
            if (ds[i].body == "poison") errors[i] = std::make_exception_ptr(PoisonMessage("cannot decode"));
            else ++handled;
        }
        return errors;
    }
    void onDeadLetter(const Delivery&, const std::string&) override {}

    std::mutex mutex;
    std::vector<std::size_t> batches;
    int handled = 0;
};

}  // namespace

TEST_CASE("messages are handled in batches, each settled on its own", "[worker]")
{
    Rig rig;  // one message "m" queued
    rig.committer().write([](sql::Statements& w) {
        const std::int64_t at = clock::nowMillis();
        for (int i = 0; i < 20; ++i) {
            const std::string body = i == 10 ? "poison" : "m";
            w("INSERT INTO messages (queue, body, due_at, created_at) VALUES ('orders', ?, ?, ?)").exec(body, at, at);
        }
    });
    BatchHandler handler;
    REQUIRE(rig.runUntil(handler, 5, [&] {
        const auto d = rig.depth();
        return d.ready + d.inFlight == 0 && d.dead == 1;
    }));
    std::lock_guard lock(handler.mutex);
    CHECK(handler.handled == 20);  // 21 messages, one of them poison
    CHECK(*std::max_element(handler.batches.begin(), handler.batches.end()) == 8);
}

namespace {

/// Takes nothing while it has no capacity; then postpones the first
/// delivery it gets, and handles the next.
class ThrottledHandler : public MessageHandler {
public:
    void handle(const Delivery& d) override
    {
        std::lock_guard lock(mutex);
        attempts.push_back(d.attempt);
        if (attempts.size() == 1) throw Postponed("no place free");
        handled = true;
    }
    std::size_t capacity(const std::string&) override
    {
        ++asked;
        return open ? 1 : 0;
    }
    void onDeadLetter(const Delivery&, const std::string&) override {}

    std::atomic<bool> open{false};
    std::atomic<int> asked{0};
    std::atomic<bool> handled{false};
    std::mutex mutex;
    std::vector<int> attempts;
};

}  // namespace

TEST_CASE("a queue without capacity is left alone, and a postponed message goes back uncounted", "[worker]")
{
    Rig rig;
    ThrottledHandler handler;
    std::thread opener([&] {
        // Asked again and again while closed, and nothing taken meanwhile.
        const auto deadline = steady_clock::now() + seconds(10);
        while (handler.asked < 5 && steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(5));
        CHECK(rig.depth().ready == 1);
        CHECK(rig.depth().inFlight == 0);
        handler.open = true;
    });
    const bool done = rig.runUntil(handler, 5, [&] { return handler.handled.load(); });
    opener.join();
    REQUIRE(done);
    std::lock_guard lock(handler.mutex);
    // The postponed delivery was given back without counting an attempt.
    CHECK(handler.attempts == std::vector<int>{1, 1});
}
