#pragma once

#include "broker/Broker.h"
#include "common/PeriodicThread.h"
#include "settings/Settings.h"
#include "store/QueueStore.h"

#include <condition_variable>
#include <map>
#include <mutex>

namespace orderpay {

/// A durable queue in the daemon's own database (QueueStore): the
/// messages the store writes with each order and payment. A consumer
/// leases a message (lease and attempt count committed before it is handed
/// out, so a delivery cut short by a crash still counts); ack deletes it;
/// retry makes it due again after an exponential backoff; dead letters
/// stay with their reason.
///
/// On SQLite the database is this daemon's alone: at start, leases held by
/// a previous run (which crashed) are given back. On PostgreSQL every
/// instance takes from the same queue (SKIP LOCKED: no message goes to two
/// at once); the leases of one that died run out after broker.lease.
///
/// A message may be due later than it was written (a step's timer, a
/// retry backing off): it is leased only once due. One lease transaction
/// takes what a consumer asks for (a batch, WorkSettings::kBatchSize), and
/// acks join the next transaction instead of waiting for a sync of their
/// own: a message costs a fraction of a sync on top of its handler's.
/// Handlers never wait out a step, so a lease lasts milliseconds.
class EmbeddedBroker : public Broker {
public:
    /// `leaseTime` (broker.lease): how long a lease lasts before the
    /// message is due again even without an ack (a consumer that died or
    /// froze), far longer than a batch takes.
    EmbeddedBroker(QueueStore& queue, const WorkSettings& work, std::chrono::milliseconds leaseTime);
    ~EmbeddedBroker() override;

    void start() override;
    void stop() override;
    /// Waits up to `timeout` for a due message; leases up to `max` at once.
    std::vector<Delivery> fetchSome(const std::string& queue, std::size_t max,
                                    std::chrono::milliseconds timeout) override;
    void ack(const Delivery& d) override;
    void retry(const Delivery& d, const std::string& reason) override;
    void deadLetter(const Delivery& d, const std::string& reason) override;
    void release(const Delivery& d) override;
    void notifyPublished(const std::string& queue) override;
    BrokerStatus status() const override;
    std::string name() const override { return "embedded"; }

    /// Delay before delivery `attempt + 1`: base * 2^(attempt-1), capped at 5 minutes.
    static std::chrono::milliseconds backoff(std::chrono::milliseconds base, int attempt);

private:
    std::vector<Delivery> tryLease(const std::string& queue, std::size_t max);
    /// The monitor's tick: the queue depths behind status().
    void lookAtQueues();

    QueueStore& store_;
    std::chrono::milliseconds backoffBase_;
    std::chrono::milliseconds leaseTime_;

    // Per queue, so a publish wakes only that queue's consumers (one wake-up
    // for all had the idle payments worker run a read after every commit of
    // the order load).
    struct Queue {
        std::condition_variable wake;
        std::uint64_t generation = 0;  // publishes seen
    };
    Queue& stateOf(const std::string& queue);  // under mutex_

    std::mutex mutex_;
    bool stopping_ = false;
    std::map<std::string, Queue> queues_;  // under mutex_; entries never go away

    mutable std::mutex statusMutex_;
    QueueDepths depths_;  // under statusMutex_
    PeriodicThread monitor_;
};

}  // namespace orderpay
