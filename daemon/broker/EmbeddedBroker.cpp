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
      leaseBatch_(work.batchSize()),
      // Counting the messages reads the whole index of the table, and
      // with a backlog of a hundred thousand that is tens of milliseconds:
      // every 2 s, as often as STATUS= is refreshed.
      monitor_("queue-monitor", std::chrono::seconds(2), [this] { lookAtQueues(); })
{
}

EmbeddedBroker::~EmbeddedBroker() { stop(); }

std::chrono::milliseconds EmbeddedBroker::leaseTimeFor(const WorkSettings& work)
{
    return std::max<std::chrono::milliseconds>(std::chrono::minutes(1), work.processingTime * 4);
}

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
    std::vector<std::deque<Delivery>> unused;
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        for (auto& [name, q] : queues_) {
            unused.push_back(std::move(q.leased));
            q.leased.clear();
            q.wake.notify_all();
        }
    }
    // Leased ahead but never handed out: give them back uncounted. If that
    // fails, the next start gives back every lease anyway.
    for (const auto& deliveries : unused) {
        for (const auto& d : deliveries) {
            try {
                store_.release(stored(d));
            } catch (const std::exception&) {
                break;
            }
        }
    }
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

std::optional<Delivery> EmbeddedBroker::tryLease(const std::string& queue)
{
    // A cheap read first, so idle consumers do not write (and sync) at all.
    if (!store_.anythingDue(queue)) return std::nullopt;
    auto leased = store_.lease(queue, leaseBatch_, leaseTime_);
    if (leased.empty()) return std::nullopt;
    for (const auto& m : leased)
        if (m.attempt > 1) Metrics::instance().redeliveries.fetch_add(1);
    std::optional<Delivery> first(delivery(std::move(leased.front())));
    if (leased.size() > 1) {
        std::lock_guard lock(mutex_);
        auto& ahead = stateOf(queue).leased;
        for (std::size_t i = 1; i < leased.size(); ++i) ahead.push_back(delivery(std::move(leased[i])));
    }
    return first;
}

std::optional<Delivery> EmbeddedBroker::takeLeased(const std::string& queue)
{
    std::lock_guard lock(mutex_);
    auto& ahead = stateOf(queue).leased;
    if (ahead.empty()) return std::nullopt;
    Delivery d = std::move(ahead.front());
    ahead.pop_front();
    return d;
}

std::optional<Delivery> EmbeddedBroker::fetch(const std::string& queue, std::chrono::milliseconds timeout)
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        std::uint64_t seen = 0;
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return std::nullopt;
            seen = stateOf(queue).generation;
        }
        if (auto d = takeLeased(queue)) return d;
        if (auto d = tryLease(queue)) return d;
        std::unique_lock lock(mutex_);
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) return std::nullopt;
        // Woken by a publish; otherwise look again shortly for messages whose
        // backoff or lease ran out.
        const auto wait = std::min<std::chrono::steady_clock::duration>(deadline - now, std::chrono::milliseconds(200));
        Queue& q = stateOf(queue);
        q.wake.wait_for(lock, wait, [&] { return stopping_ || q.generation != seen; });
    }
}

std::vector<Delivery> EmbeddedBroker::fetchSome(const std::string& queue, std::size_t max,
                                                std::chrono::milliseconds timeout)
{
    std::vector<Delivery> ds;
    auto first = fetch(queue, timeout);
    if (!first) return ds;
    ds.push_back(std::move(*first));
    while (ds.size() < max) {
        auto next = takeLeased(queue);
        if (!next) break;
        ds.push_back(std::move(*next));
    }
    return ds;
}

void EmbeddedBroker::ack(const Delivery& d)
{
    // The handler's outcome is committed; losing the ack only means one
    // more (idempotent) delivery, so with instant processing it need not
    // wait for a sync of its own.
    store_.ack(stored(d), leaseBatch_ <= 1);
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
