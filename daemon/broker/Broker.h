#pragma once

#include "domain/Queues.h"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace orderpay {

/// One message handed to a consumer. The consumer must end it with exactly
/// one of ack, retry, deadLetter or release.
struct Delivery {
    std::string queue;
    std::string body;
    std::int64_t messageId = 0;  // broker-specific handle
    std::int64_t lease = 0;      // broker-specific handle
    int attempt = 1;             // 1 on first delivery; counts crashed deliveries too
    bool redelivered() const { return attempt > 1; }
};

/// The broker as its own thread last saw it. Reading it never waits: not
/// on the network, not on the database's writer.
struct BrokerStatus {
    enum class State {
        Ok,            // connected and answering
        Disconnected,  // no connection
        Unresponsive,  // connected, but no answer for kUnresponsiveAfter
    };
    /// A broker that has not answered for this long counts as unavailable.
    static constexpr std::chrono::seconds kUnresponsiveAfter{5};

    State state = State::Ok;
    QueueDepths depths;  // from the last look, at most a second or two old
};

/// "ok", "disconnected" or "unresponsive", as /health/ready names them.
std::string_view toString(BrokerStatus::State state);

/// What the workers need of a queue, whatever carries it. Messages are
/// written by the store in the same transaction as their state (the
/// outbox); a broker delivers them, at least once, to one consumer at a
/// time. Exactly-once effects are the consumers' job (see work/).
///
/// The broker's threads (if any) run from start() to stop(); destruction
/// stops them too.
class Broker {
public:
    virtual ~Broker() = default;

    virtual void start() = 0;
    /// Ends delivery: fetches return nothing from now on. Call after the
    /// consumers have stopped.
    virtual void stop() = 0;

    /// Waits up to `timeout` for messages on `queue`; returns up to `max`
    /// of those the broker has at hand.
    virtual std::vector<Delivery> fetchSome(const std::string& queue, std::size_t max,
                                            std::chrono::milliseconds timeout) = 0;
    /// Done: the work's state change has committed.
    virtual void ack(const Delivery& d) = 0;
    /// Failed for a reason that may pass: deliver again after a backoff.
    virtual void retry(const Delivery& d, const std::string& reason) = 0;
    /// Failed for good: park it in the dead letters with its reason.
    virtual void deadLetter(const Delivery& d, const std::string& reason) = 0;
    /// Not worked on (shutdown): give it back untouched, not counted as an attempt.
    virtual void release(const Delivery& d) = 0;

    /// The store committed a message for `queue`: wake a consumer (embedded)
    /// or the outbox relay (RabbitMQ).
    virtual void notifyPublished(const std::string& queue) = 0;

    virtual BrokerStatus status() const = 0;
    virtual std::string name() const = 0;
};

}  // namespace orderpay
