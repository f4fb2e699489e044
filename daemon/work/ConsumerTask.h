#pragma once

#include "broker/Broker.h"

#include <Poco/Logger.h>
#include <Poco/Task.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <limits>
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

/// Thrown by a handler that cannot take the message now (no free place
/// for another order in processing): it goes back to the queue, the
/// delivery not counted as an attempt.
class Postponed : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// What a consumer does with one message of its queue. `handle` must be
/// idempotent: a message may be delivered again after a crash or a
/// failure, and its effects must not happen twice.
class MessageHandler {
public:
    virtual ~MessageHandler() = default;
    /// Handles one message. It must not wait long (a step's time is a timer
    /// message, never a sleep): the worker's other messages wait meanwhile.
    virtual void handle(const Delivery& d) = 0;
    /// How many messages handleSome takes at once; 1 (the default): no batches.
    virtual std::size_t batchSize() const { return 1; }
    /// Handles several messages together where that is cheaper (one
    /// transaction for all); per message, what handling it threw (nullptr:
    /// done). The same effects as `handle` on each.
    virtual std::vector<std::exception_ptr> handleSome(const std::vector<Delivery>& ds);
    /// How many messages of `queue` it can take now (0: leave them queued).
    virtual std::size_t capacity(const std::string&) { return std::numeric_limits<std::size_t>::max(); }
    /// The message is given up on: record the final state it leaves behind.
    virtual void onDeadLetter(const Delivery& d, const std::string& reason) = 0;
};

/// A worker thread: takes messages from its queues (in turn, as many of
/// each as the handler has capacity for) and settles each with exactly one
/// of ack, retry, dead-letter or release.
class ConsumerTask : public Poco::Task {
public:
    ConsumerTask(const std::string& name, Broker& broker, std::vector<std::string> queues, MessageHandler& handler,
                 int maxAttempts);

    void runTask() override;

    /// Monotonic milliseconds of the last sign of life (idle poll or
    /// finished batch), for the watchdog.
    std::int64_t lastProgressMs() const { return lastProgress_.load(); }

private:
    /// Takes what `queue` has (waiting up to `wait` for it) and settles it;
    /// false if there was nothing, or the task was cancelled.
    bool takeFrom(const std::string& queue, std::size_t max, std::chrono::milliseconds wait);
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
    // After the database refused a message's outcome: settles it again once
    // the database takes writes (the handler is idempotent), instead of
    // leaving it to wait out its lease.
    void settleWhenWritable(const Delivery& d);
    void touch();

    Broker& broker_;
    std::vector<std::string> queues_;
    MessageHandler& handler_;
    int maxAttempts_;
    Poco::Logger& log_;
    std::atomic<std::int64_t> lastProgress_{0};
};

}  // namespace orderpay
