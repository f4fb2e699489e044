#pragma once

#include "domain/Queues.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace orderpay {

/// A message of the embedded queue as the store holds it.
struct StoredMessage {
    std::int64_t id = 0;
    std::string queue;
    std::string body;
    int attempt = 1;         // this delivery's number, counting those cut short
    std::int64_t lease = 0;  // which lease of the message this delivery holds
    std::int64_t createdAt = 0;  // milliseconds since the epoch
};

/// The embedded queue: the messages the store writes with each state
/// change, leased to consumers. A lease and its attempt count are committed
/// before a message is handed out, so a delivery cut short by a crash still
/// counts. Every call naming a message names its lease too: one whose lease
/// was taken over changes nothing.
class QueueStore {
public:
    virtual ~QueueStore() = default;

    /// At start: the leases a previous run held are given back (that process
    /// is gone), their attempt counts kept.
    virtual void releaseAllLeases() = 0;
    /// A cheap read: is a message of `queue` due (ready, or its lease run out)?
    virtual bool anythingDue(const std::string& queue) = 0;
    /// Leases up to `max` due messages of `queue`, oldest due first, for `leaseTime`.
    virtual std::vector<StoredMessage> lease(const std::string& queue, std::size_t max,
                                             std::chrono::milliseconds leaseTime) = 0;
    /// Reads (without leasing) up to `max` due ready messages of `queue`,
    /// oldest due first: for the one consumer of a queue in a database no
    /// other instance uses (the webhooks on SQLite), who keeps track of what
    /// it holds itself. `attempt` is the delivery's number, `lease` the
    /// message's as it stands.
    virtual std::vector<StoredMessage> due(const std::string& queue, std::size_t max) = 0;
    /// Done: the message goes. With `wait` false the caller does not wait
    /// for the commit (losing it means one more delivery, which is harmless).
    virtual void ack(const StoredMessage& m, bool wait) = 0;
    /// Due again after `delay`, with the error kept.
    virtual void retry(const StoredMessage& m, std::chrono::milliseconds delay, const std::string& reason) = 0;
    virtual void deadLetter(const StoredMessage& m, const std::string& reason) = 0;
    /// Given back untouched: due now, this attempt not counted.
    virtual void release(const StoredMessage& m) = 0;

    virtual QueueDepths depths() = 0;
};

}  // namespace orderpay
