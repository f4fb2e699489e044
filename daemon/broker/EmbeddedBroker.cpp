#include "broker/EmbeddedBroker.h"

#include "domain/Errors.h"
#include "metrics/Metrics.h"

#include <algorithm>

namespace orderpay {
namespace {

StoredMessage stored(const Delivery& d) { return StoredMessage{d.messageId, d.queue, d.body, d.attempt, d.lease}; }

Delivery delivery(StoredMessage&& m)
{
    return Delivery{std::move(m.queue), std::move(m.body), m.id, m.lease, m.attempt};
}

}  // namespace

EmbeddedBroker::EmbeddedBroker(QueueStore& queue, const WorkSettings& work, std::chrono::milliseconds leaseTime)
    : store_(queue),
      backoffBase_(work.retryBackoff),
      leaseTime_(leaseTime),
      // Counting the messages reads the whole index of the table, and
      // with a backlog of a hundred thousand that is tens of milliseconds:
      // every 2 s, as often as STATUS= is refreshed.
      monitor_("queue-monitor", std::chrono::seconds(2), [this] { lookAtQueues(); })
{
}

EmbeddedBroker::~EmbeddedBroker() { stop(); }

std::chrono::milliseconds EmbeddedBroker::backoff(std::chrono::milliseconds base, int attempt)
{
    const auto cap = std::chrono::milliseconds(std::chrono::minutes(5));
    if (base.count() == 0) return base;
    auto delay = base;
    for (int i = 1; i < attempt && delay < cap; ++i) delay *= 2;
    return std::min(delay, cap);
}

void EmbeddedBroker::start()
{
    // Leases of a previous run: that process is gone, so the messages are
    // due now. Their attempt counts stay, so a message that crashes the
    // daemon every time still reaches the dead letters.
    store_.releaseAllLeases();
    {
        std::lock_guard lock(mutex_);
        stopping_ = false;
    }
    lookAtQueues();  // so the first STATUS= and /metrics have depths
    monitor_.start();
}

void EmbeddedBroker::stop()
{
    monitor_.stop();
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& [name, q] : queues_) q.wake.notify_all();
}

void EmbeddedBroker::lookAtQueues()
{
    try {
        QueueDepths fresh = store_.depths();
        std::lock_guard lock(statusMutex_);
        depths_ = std::move(fresh);
    } catch (const std::exception&) {
        // The last depths stand; the store logs what keeps it from reading.
    }
}

BrokerStatus EmbeddedBroker::status() const
{
    std::lock_guard lock(statusMutex_);
    return BrokerStatus{BrokerStatus::State::Ok, depths_};
}

EmbeddedBroker::Queue& EmbeddedBroker::stateOf(const std::string& name) { return queues_[name]; }

void EmbeddedBroker::notifyPublished(const std::string& name)
{
    std::lock_guard lock(mutex_);
    Queue& q = stateOf(name);
    ++q.generation;
    q.wake.notify_all();
}

std::vector<Delivery> EmbeddedBroker::tryLease(const std::string& queue, std::size_t max)
{
    std::vector<Delivery> ds;
    // A cheap read first, so idle consumers do not write (and sync) at all.
    if (!store_.anythingDue(queue)) return ds;
    auto leased = store_.lease(queue, max, leaseTime_);
    ds.reserve(leased.size());
    for (auto& m : leased) {
        if (m.attempt > 1) Metrics::instance().redeliveries.fetch_add(1);
        ds.push_back(delivery(std::move(m)));
    }
    return ds;
}

std::vector<Delivery> EmbeddedBroker::fetchSome(const std::string& queue, std::size_t max,
                                                std::chrono::milliseconds timeout)
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        std::uint64_t seen = 0;
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return {};
            seen = stateOf(queue).generation;
        }
        if (auto ds = tryLease(queue, max); !ds.empty()) return ds;
        std::unique_lock lock(mutex_);
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) return {};
        // Woken by a publish; otherwise look again shortly for messages that
        // came due (timers, backoffs, leases run out).
        const auto wait = std::min<std::chrono::steady_clock::duration>(deadline - now, std::chrono::milliseconds(100));
        Queue& q = stateOf(queue);
        q.wake.wait_for(lock, wait, [&] { return stopping_ || q.generation != seen; });
    }
}

void EmbeddedBroker::ack(const Delivery& d)
{
    // The handler's outcome is committed; losing the ack only means one
    // more (idempotent) delivery, so it need not wait for a sync of its own.
    store_.ack(stored(d), false);
}

void EmbeddedBroker::retry(const Delivery& d, const std::string& reason)
{
    store_.retry(stored(d), backoff(backoffBase_, d.attempt), reason);
}

void EmbeddedBroker::deadLetter(const Delivery& d, const std::string& reason)
{
    store_.deadLetter(stored(d), reason);
    Metrics::instance().deadLetters.fetch_add(1);
}

void EmbeddedBroker::release(const Delivery& d)
{
    store_.release(stored(d));
    notifyPublished(d.queue);
}

}  // namespace orderpay
