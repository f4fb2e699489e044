#pragma once

#include "broker/Broker.h"

#include <Poco/Logger.h>
#include <Poco/Task.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace orderpay {

/// Thrown by a handler whose work was cut short by shutdown: the message
/// goes back to the queue untouched.
class Interrupted : public std::runtime_error {
public:
    Interrupted() : std::runtime_error("interrupted by shutdown") {}
};

/// What a consumer does with one message of its queue. `handle` must be
/// idempotent: a message may be delivered again after a crash or a
/// failure, and its effects must not happen twice.
class MessageHandler {
public:
    /// Sleeps up to the given time; true if the task was asked to stop.
    using Sleep = std::function<bool(std::chrono::milliseconds)>;

    virtual ~MessageHandler() = default;
    virtual void handle(const Delivery& d, const Sleep& sleep) = 0;
    /// How many messages handleSome takes at once; 1 (the default): no batches.
    virtual std::size_t batchSize() const { return 1; }
    /// Handles several messages together where that is cheaper (one
    /// transaction for all); per message, what handling it threw (nullptr:
    /// done). The same effects as `handle` on each.
    virtual std::vector<std::exception_ptr> handleSome(const std::vector<Delivery>& ds, const Sleep& sleep);
    /// The message is given up on: record the final state it leaves behind.
    virtual void onDeadLetter(const Delivery& d, const std::string& reason) = 0;
};

/// A worker thread: takes messages from one queue and settles each with
/// exactly one of ack, retry, dead-letter or release.
class ConsumerTask : public Poco::Task {
public:
    ConsumerTask(const std::string& name, Broker& broker, std::string queue, MessageHandler& handler,
                 int maxAttempts);

    void runTask() override;

    /// Monotonic milliseconds of the last sign of life (idle poll or
    /// finished message), for the watchdog.
    std::int64_t lastProgressMs() const { return lastProgress_.load(); }

private:
    void settle(const Delivery& d);
    void settleSome(const std::vector<Delivery>& ds);
    /// Ends a handled message: ack, or what `error` calls for (release,
    /// retry, dead letter); StoreUnavailable is rethrown.
    void conclude(const Delivery& d, const std::exception_ptr& error);
    /// Settles `d` with `settleOne`, keeping the worker alive through what
    /// the database or the broker throws.
    template <typename F>
    bool guarded(const Delivery& d, F&& settleOne);
    /// Past retry.max_attempts (deliveries cut short count too): dead-lettered.
    bool gaveUp(const Delivery& d);
    void deadLetter(const Delivery& d, const std::string& reason);
    MessageHandler::Sleep sleeper();
    // After the database refused a message's outcome: settles it again once
    // the database takes writes (the handler is idempotent), instead of
    // leaving it to wait out its lease.
    void settleWhenWritable(const Delivery& d);
    void touch();

    Broker& broker_;
    std::string queue_;
    MessageHandler& handler_;
    int maxAttempts_;
    Poco::Logger& log_;
    std::atomic<std::int64_t> lastProgress_{0};
};

}  // namespace orderpay
