#pragma once

#include "domain/Queues.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace orderpay {

/// A message waiting in the outbox to be published to RabbitMQ. A first
/// publication names only its queue; a retry or a dead letter names where
/// it goes and keeps the id of the message it continues.
struct OutboxMessage {
    std::int64_t id = 0;  // the outbox row
    std::string queue;
    std::string body;
    std::string exchange;    // empty: the work exchange; "-": the default exchange
    std::string routingKey;  // empty: the queue's name
    std::map<std::string, std::string> headers;
    std::int64_t messageId = 0;  // the message's own id: the first row's id
};

/// The outbox the RabbitMQ relay publishes from, and the delivery counts
/// of the messages consumed from RabbitMQ (retry.max_attempts counts
/// deliveries cut short by a crash, which RabbitMQ cannot tell).
class OutboxStore {
public:
    virtual ~OutboxStore() = default;

    /// Claims up to `max` messages to publish, for `claimTime`: a claim
    /// whose relay died is published again after it.
    virtual std::vector<OutboxMessage> claim(std::size_t max, std::chrono::milliseconds claimTime) = 0;
    /// Not confirmed by the broker: claimable again at once.
    virtual void unclaim(const std::vector<std::int64_t>& ids) = 0;
    /// Confirmed by the broker: gone from the outbox.
    virtual void remove(const std::vector<std::int64_t>& ids) = 0;
    /// Adds a message (a retry or a dead letter) to the outbox; committed on return.
    virtual void add(const OutboxMessage& m) = 0;
    /// Keeps a message given up on as a dead letter (in the database, where
    /// the operator routes list and replay them), with its attempts and
    /// reason; committed on return.
    virtual void deadLetter(const OutboxMessage& m, int attempts, const std::string& reason) = 0;
    /// Messages not yet published, by queue (ready; nothing is in flight
    /// here), and the dead letters kept (dead).
    virtual QueueDepths pending() = 0;

    /// Counts one more delivery of each message and returns each one's
    /// attempt number, committed on return. An id <= 0 (a message not of
    /// ours) is not counted: its attempt is 1.
    virtual std::vector<int> countDeliveries(const std::vector<std::int64_t>& messageIds) = 0;
    /// A delivery that did not happen (given back at shutdown): uncounted.
    virtual void uncountDelivery(std::int64_t messageId) = 0;
    /// The message is settled: its count is forgotten, without waiting for
    /// the commit (a count left behind is never read again).
    virtual void forgetDeliveries(std::int64_t messageId) = 0;
};

}  // namespace orderpay
