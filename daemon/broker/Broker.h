#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
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

struct QueueDepth {
    std::int64_t ready = 0;     // waiting, including those backing off
    std::int64_t inFlight = 0;  // leased to a consumer
    std::int64_t dead = 0;      // dead-lettered
    std::int64_t oldestAgeMs = 0;
};

/// What the workers need of a queue, whatever carries it. Messages are
/// written by the store in the same transaction as their state (the
/// outbox); a broker delivers them, at least once, to one consumer at a
/// time. Exactly-once effects are the consumers' job (see work/).
class Broker {
public:
    virtual ~Broker() = default;

    virtual void start() = 0;
    virtual void stop() = 0;

    /// Waits up to `timeout` for a message on `queue`.
    virtual std::optional<Delivery> fetch(const std::string& queue, std::chrono::milliseconds timeout) = 0;
    /// Waits up to `timeout` for messages on `queue`; returns up to `max`
    /// of those the broker has at hand (by default: one, as fetch).
    virtual std::vector<Delivery> fetchSome(const std::string& queue, std::size_t max,
                                            std::chrono::milliseconds timeout)
    {
        (void)max;
        std::vector<Delivery> ds;
        if (auto d = fetch(queue, timeout)) ds.push_back(std::move(*d));
        return ds;
    }
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

    virtual bool connected() const = 0;
    virtual std::string name() const = 0;
    virtual std::map<std::string, QueueDepth> depths() = 0;
};

}  // namespace orderpay
