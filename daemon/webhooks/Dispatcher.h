#pragma once

#include "settings/Settings.h"
#include "store/QueueStore.h"
#include "store/WebhookStore.h"
#include "webhooks/Pacer.h"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

namespace orderpay::webhooks {

/// The delay before attempt `attempt + 1`, after attempt `attempt` failed
/// (docs/webhooks.md): 5 s, 5 min, 30 min, 2 h, 5 h, then 10 h.
std::chrono::milliseconds retryDelay(int attempt);
/// A Retry-After value (seconds, or an HTTP date) as a delay from `nowMillis`,
/// clamped to 1 s .. 10 h; nothing if it cannot be read.
std::optional<std::chrono::milliseconds> parseRetryAfter(const std::string& value, std::int64_t nowMillis);

/// Delivers the webhooks queue's messages: one thread driving libcurl's
/// multi interface, so up to webhooks.concurrency deliveries are in flight
/// at once. One endpoint has at most half of them in flight, and one slow
/// to answer (its oldest delivery in flight began over a second ago) a
/// quarter: a receiver that never answers holds only its share. Each message names
/// an endpoint and an event; the event's body is rendered from the order's
/// event as it was, signed with the endpoint's secret(s), POSTed, and the
/// attempt logged and settled in one transaction with its message. Leases
/// on the messages (QueueStore) make each delivery one instance's when
/// several share the database.
///
/// Deliveries yield to the API: the thread runs at nice 19, and while the
/// database's writers are saturated (Pacer) at most kYieldingRate deliveries
/// start a second; the backlog goes at full speed once the writers have room
/// again (docs/architecture.md, docs/performance.md).
class Dispatcher {
public:
    static constexpr int kYieldingRate = 2000;
    /// Outcomes counted in orderpay_webhook_deliveries_total.
    struct Stats {
        std::uint64_t delivered = 0;
        std::uint64_t failed = 0;    // an attempt that failed (to be retried)
        std::uint64_t gaveUp = 0;    // past webhooks.max_age: a dead letter
        std::uint64_t disabled = 0;  // answered 410: the endpoint was disabled
        std::uint64_t dropped = 0;   // its endpoint was removed or disabled
        std::int64_t inFlight = 0;
        bool yielding = false;  // paced to kYieldingRate: the writers are saturated
        /// Attempts by duration: [i] counts those of at most kSecondsBounds[i]
        /// (cumulative); sum in seconds.
        std::array<std::uint64_t, 10> upTo{};
        std::uint64_t count = 0;
        double sumSeconds = 0;
    };
    static constexpr std::array<double, 10> kSecondsBounds{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

    /// `shared`: other instances use the database (PostgreSQL), so each
    /// message is leased in it before its delivery; otherwise this is the
    /// queue's one consumer and keeps what it holds in memory (a write less
    /// per delivery; a delivery cut short by a crash is then not counted).
    Dispatcher(QueueStore& queue, WebhookStore& store, const WebhookSettings& settings,
               std::chrono::milliseconds brokerLease, bool shared);
    ~Dispatcher();
    Dispatcher(const Dispatcher&) = delete;
    Dispatcher& operator=(const Dispatcher&) = delete;

    void start();
    /// Returns once the thread is gone; deliveries in flight and waiting
    /// are handed back (due at once, the attempt not counted).
    void stop();
    /// A message was queued: look now rather than at the next poll.
    void wake();

    Stats stats() const;
    void renderMetrics(std::ostream& out) const;

private:
    struct Transfer;
    /// Ids whose settlement committed (told on the writer's thread).
    struct Settled {
        std::mutex mutex;
        std::vector<std::int64_t> ids;
    };

    void run();
    void refreshEndpoints(std::int64_t now);
    /// Takes due messages (a lease, or a read) into the endpoints' waiting
    /// lists while they hold less than half a buffer; puts off those of an
    /// endpoint turned slow.
    void fetch(std::int64_t now);
    /// Starts waiting deliveries, endpoint by endpoint, while slots are free
    /// and each endpoint is within its share.
    void pump(std::int64_t now);
    /// Starts a delivery of `m` (or settles it at once: its endpoint removed).
    void begin(const StoredMessage& m, std::int64_t now);
    void finish(Transfer& t, int curlCode);
    bool slow(const std::string& endpointId, std::int64_t now) const;
    /// How long what waits for an endpoint resting (it kept failing with no
    /// answer) is put off; 0 when it is not resting, or its probe may go.
    std::int64_t restFor(const std::string& endpointId, std::int64_t now) const;
    bool resting(const std::string& endpointId) const;
    /// How long to put off what waits for an endpoint slow or resting.
    std::int64_t putOffFor(const std::string& endpointId, std::int64_t now) const;
    /// Whether `m` is kept to wait for its endpoint, or put off (resting).
    bool keepFor(const std::string& endpointId, std::int64_t now) const;
    /// Every Pacer::kWatchEveryMs: whether the writers are saturated.
    void watchWriters(std::int64_t now);
    void settleLater(const StoredMessage& m, const WebhookAttempt& attempt, const WebhookSettlement& settlement);
    /// Hands the settlements gathered to the store, in one transaction.
    void flushSettlements();

    QueueStore& queue_;
    WebhookStore& store_;
    const WebhookSettings settings_;
    const std::chrono::milliseconds leaseTime_;
    const int perEndpoint_;      // in flight to one endpoint
    const int perSlowEndpoint_;  // ... to one slow to answer
    const int buffer_;           // messages taken in hand ahead of the slots
    const bool shared_;
    void* multi_ = nullptr;  // CURLM*

    std::map<std::string, WebhookEndpoint> endpoints_;
    std::int64_t refreshedAt_ = 0;
    std::uint64_t seenGeneration_ = 0;  // of the subscriptions, at the last read
    std::int64_t prunedAt_ = 0;
    /// An endpoint whose deliveries failed kRestAfter times in a row with no
    /// answer (refused, unreachable, timed out) rests: nothing goes to it
    /// until `until`, then one delivery, a probe; the rest grows from 5 s to
    /// 5 min while probes fail, and ends with the first answer.
    struct Rest {
        int failures = 0;
        std::int64_t until = 0;
        std::int64_t lengthMs = 0;
    };
    std::map<std::string, Rest> rests_;
    /// Endpoint -> when each of its deliveries in flight began.
    std::map<std::string, std::vector<std::int64_t>> busy_;
    /// Messages taken in hand, by endpoint, waiting for a slot.
    std::map<std::string, std::deque<StoredMessage>> waiting_;
    std::size_t waitingCount_ = 0;
    /// Every message in hand (waiting, in flight, or settled but not yet
    /// committed): a read of the due messages skips them.
    std::set<std::int64_t> held_;
    /// SQLite: the outbox row the last read ended at (0: read from the start).
    std::int64_t outboxAfter_ = 0;
    std::int64_t rescannedAt_ = 0;
    bool passingOver_ = false;  // the last outbox read took none of its rows
    std::shared_ptr<Settled> settled_ = std::make_shared<Settled>();
    std::int64_t flushedAt_ = 0;
    Pacer pacer_{kYieldingRate};
    std::vector<std::unique_ptr<Transfer>> transfers_;
    std::vector<std::pair<StoredMessage, WebhookAttempt>> toSettle_;
    std::vector<WebhookSettlement> settlements_;

    mutable std::mutex statsMutex_;
    Stats stats_;
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

}  // namespace orderpay::webhooks
