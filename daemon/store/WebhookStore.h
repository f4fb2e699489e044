#pragma once

#include "domain/Order.h"
#include "store/QueueStore.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace orderpay {

/// A receiver of webhooks, as registered (docs/webhooks.md).
struct WebhookEndpoint {
    std::string id;  // we_<ULID>
    std::string url;
    std::vector<std::string> events;
    bool enabled = true;
    std::optional<std::string> disabledReason;
    std::string createdAt;
    std::string secret;                         // whsec_...
    std::optional<std::string> previousSecret;  // still signing after a rotation, until previousUntil
    std::int64_t previousUntil = 0;             // milliseconds since the epoch
};

/// One attempt at delivering an event to an endpoint: the delivery log.
struct WebhookAttempt {
    std::int64_t id = 0;  // whd_<id> in the API
    std::string endpointId;
    std::string eventId;
    std::string eventType;
    int attempt = 1;
    std::string at;  // RFC 3339
    std::optional<int> statusCode;
    std::optional<std::string> error;
    std::int64_t durationMs = 0;
};

/// An event about an order as its status-change event recorded it: the
/// order (or payment) as it was then, rendered by the caller.
struct OrderEventSnapshot {
    std::string at;
    Order order;                     // status, reason, updated_at as of the event
    std::optional<Payment> payment;  // payment.* events: as of the event
};

/// What a delivery attempt's end does to its message (one transaction with
/// the attempt's log entry).
struct WebhookSettlement {
    /// Drop: the endpoint is gone or disabled (not logged); Postpone: not
    /// attempted (its endpoint had no free slot), due again after `delay`
    /// with this delivery not counted (not logged).
    enum class Kind { Delivered, Retry, GiveUp, Drop, Postpone } kind = Kind::Delivered;
    std::chrono::milliseconds delay{0};  // Retry, Postpone
    std::string reason;                  // Retry, GiveUp: the error kept with the message
    std::optional<std::string> disableReason;  // an answer of 410: the endpoint is disabled
};

/// Which enabled endpoints take which event types: read by the writers at
/// each status change (an event's messages are written in its transaction,
/// one per endpoint), replaced when the endpoints change. With several
/// instances on one database another instance's change is seen within a
/// second (WebhookDispatcher refreshes it).
class WebhookSubscriptions {
public:
    struct Subscriber {
        std::string endpointId;
        std::vector<std::string> events;
    };
    /// `outboxTable`: see outboxTable().
    explicit WebhookSubscriptions(bool outboxTable = false) : outboxTable_(outboxTable) {}

    void replace(std::vector<Subscriber> subscribers)
    {
        auto next = std::make_shared<const std::vector<Subscriber>>(std::move(subscribers));
        std::lock_guard lock(mutex_);
        current_ = std::move(next);
        ++generation_;
    }
    /// Counts the replacements: the dispatcher reads the endpoints again
    /// when it changed (a rotation's new secret signs at once).
    std::uint64_t generation() const { return generation_; }
    /// The endpoints subscribed to `eventType`, in no particular order.
    std::vector<std::string> subscribers(std::string_view eventType) const
    {
        std::shared_ptr<const std::vector<Subscriber>> now;
        {
            std::lock_guard lock(mutex_);
            now = current_;
        }
        std::vector<std::string> ids;
        for (const auto& s : *now)
            for (const auto& e : s.events)
                if (e == eventType) ids.push_back(s.endpointId);
        return ids;
    }
    /// Whether announced deliveries go to webhook_outbox (SQLite: the one
    /// dispatcher using the file reads it) rather than into messages.
    bool outboxTable() const { return outboxTable_; }
    /// Who delivers the webhooks queue, told after each commit that queued
    /// deliveries (on the writer's thread: it must only wake it). Set before
    /// the store is used by other threads.
    void setListener(std::function<void()> listener) { listener_ = std::move(listener); }
    void announced() const
    {
        if (listener_) listener_();
    }
    /// The enabled endpoints known.
    std::size_t size() const
    {
        std::lock_guard lock(mutex_);
        return current_->size();
    }

private:
    std::function<void()> listener_;
    const bool outboxTable_;
    std::atomic<std::uint64_t> generation_{0};
    mutable std::mutex mutex_;
    std::shared_ptr<const std::vector<Subscriber>> current_ = std::make_shared<const std::vector<Subscriber>>();
};

/// The webhook endpoints, their delivery log, and what a delivery reads
/// and writes. The deliveries themselves, one per event and endpoint, are
/// written with the state change the event announces: as messages of the
/// `webhooks` queue (QueueStore) when instances share the database; on
/// SQLite as rows of webhook_outbox (announced()), which become messages
/// only when they have to wait (a retry, a delivery put off, a dead letter).
class WebhookStore {
public:
    virtual ~WebhookStore() = default;

    virtual void addEndpoint(const WebhookEndpoint& endpoint) = 0;
    /// All of them, oldest first, secrets included.
    virtual std::vector<WebhookEndpoint> endpoints() = 0;
    virtual std::optional<WebhookEndpoint> endpoint(const std::string& id) = 0;
    /// False if there was none; its undelivered messages are dropped as
    /// they come due.
    virtual bool removeEndpoint(const std::string& id) = 0;
    /// A new secret; the old one signs beside it until `previousUntil`.
    virtual std::optional<WebhookEndpoint> rotate(const std::string& id, const std::string& secret,
                                                  std::int64_t previousUntil) = 0;
    /// Newest first, those before attempt `after` (0: from the newest).
    virtual std::vector<WebhookAttempt> attempts(const std::string& endpointId, int limit, std::int64_t after) = 0;
    /// Queues a webhook.test event for one endpoint.
    virtual void queueTest(const std::string& endpointId, const std::string& eventId) = 0;

    /// SQLite: the first `max` deliveries announced and not yet tried after
    /// outbox row `afterId`, oldest first, as messages whose id is the
    /// outbox row's, negated (so never one of a message's). Nothing where
    /// instances share the database.
    virtual std::vector<StoredMessage> announced(std::int64_t afterId, std::size_t max) = 0;
    /// The order event `seq` of `orderId` as it was: nothing if either is gone.
    virtual std::optional<OrderEventSnapshot> orderEvent(const std::string& orderId, std::int64_t seq,
                                                         const std::string& paymentId) = 0;
    /// Logs each attempt and settles its message, all in one transaction,
    /// without waiting for the commit (a settlement lost to a crash means
    /// one more delivery, which receivers deduplicate); `done` is told on
    /// the writer's thread once it committed or failed. A message's attempt
    /// count becomes its `attempt` (the delivery's number; one less when
    /// put off, or given up on untried: an attempt naming no endpoint, which
    /// is not logged), whether or not it was leased.
    virtual void settle(const std::vector<std::pair<StoredMessage, WebhookAttempt>>& attempts,
                        const std::vector<WebhookSettlement>& settlements, std::function<void()> done) = 0;
    /// Makes every delivery to `endpointId` waiting for a later time due now
    /// (it answers again after a rest), without waiting for the commit.
    virtual void resume(const std::string& endpointId) = 0;
    /// Forgets log entries older than `before` (milliseconds since the epoch).
    virtual void pruneAttempts(std::int64_t before) = 0;
    /// Microseconds the database's writers spent on transactions so far, and
    /// how many writers there are: the dispatcher steps back while writing
    /// is saturated (the API's writes wait for the same writers).
    virtual std::pair<std::uint64_t, std::size_t> writersBusy() const = 0;
    /// Which endpoints take which events, as the writers read it.
    virtual WebhookSubscriptions& subscriptions() = 0;
};

}  // namespace orderpay
