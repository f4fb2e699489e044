#include "broker/EmbeddedBroker.h"

#include "domain/Clock.h"
#include "metrics/Metrics.h"

#include <Poco/Data/Statement.h>

#include <algorithm>
#include <string_view>
#include <tuple>

using namespace Poco::Data::Keywords;
using Poco::Data::Session;
using Poco::Data::Statement;

namespace orderpay {

EmbeddedBroker::EmbeddedBroker(Database& db, Committer& committer, const WorkSettings& work)
    : db_(db),
      committer_(committer),
      backoffBase_(work.retryBackoff),
      leaseTime_(std::max<std::chrono::milliseconds>(std::chrono::minutes(1), work.processingTime * 4)),
      leaseBatch_(work.batchSize())
{
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
    committer_.write([](Session& s) {
        const Poco::Int64 at = clock::nowMillis();
        s << "UPDATE messages SET state = 'ready', due_at = ? WHERE state = 'leased'", useRef(at), now;
    });
    std::lock_guard lock(mutex_);
    stopping_ = false;
}

void EmbeddedBroker::stop()
{
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
                release(d);
            } catch (const std::exception&) {
                break;
            }
        }
    }
}

EmbeddedBroker::Queue& EmbeddedBroker::stateOf(const std::string& name)
{
    return queues_[name];
}

void EmbeddedBroker::notifyPublished(const std::string& name)
{
    std::lock_guard lock(mutex_);
    Queue& q = stateOf(name);
    ++q.generation;
    q.wake.notify_all();
}

bool EmbeddedBroker::anythingDue(const std::string& queue)
{
    // Each state its own range of the index: "state IN (...)" would build
    // a temporary b-tree of the list at every run.
    bool due = false;
    const std::int64_t at = clock::nowMillis();
    db_.localReader()(
        "SELECT 1 FROM messages WHERE queue = ? AND state = 'ready' AND due_at <= ? "
        "UNION ALL SELECT 1 FROM messages WHERE queue = ? AND state = 'leased' AND due_at <= ? LIMIT 1")
        .query([&](sql::Statement&) { due = true; }, queue, at, queue, at);
    return due;
}

std::optional<Delivery> EmbeddedBroker::tryLease(const std::string& queue)
{
    // A cheap read first, so idle consumers do not write (and sync) at all.
    if (!anythingDue(queue)) return std::nullopt;
    std::vector<Delivery> deliveries;
    committer_.write([&](Session&) {
        deliveries.clear();
        sql::Statements& w = db_.writes();
        const std::int64_t at = clock::nowMillis();
        // Ready messages and expired leases, oldest due first. Read as two
        // ranges of the index, each already in (due_at, id) order, and
        // merged here: one query over "state IN (...) ORDER BY" built two
        // temporary b-trees per lease, a twentieth of the writer's time.
        struct Due {
            std::int64_t dueAt;
            Delivery delivery;
        };
        std::vector<Due> due;
        for (std::string_view state : {"ready", "leased"}) {
            w("SELECT id, body, attempts, lease, due_at FROM messages "
              "WHERE queue = ? AND state = ? AND due_at <= ? ORDER BY due_at, id LIMIT ?")
                .query(
                    [&](sql::Statement& row) {
                        due.push_back({row.integer(4), Delivery{queue, row.text(1), row.integer(0),
                                                                row.integer(3) + 1,
                                                                static_cast<int>(row.integer(2) + 1)}});
                    },
                    queue, state, at, static_cast<std::int64_t>(leaseBatch_));
        }
        std::sort(due.begin(), due.end(), [](const Due& a, const Due& b) {
            return std::tie(a.dueAt, a.delivery.messageId) < std::tie(b.dueAt, b.delivery.messageId);
        });
        if (due.size() > leaseBatch_) due.resize(leaseBatch_);
        for (auto& d : due) deliveries.push_back(std::move(d.delivery));
        const std::int64_t until = at + leaseTime_.count();
        for (const auto& d : deliveries) {
            w("UPDATE messages SET state = 'leased', attempts = attempts + 1, lease = lease + 1, due_at = ? WHERE id = ?")
                .exec(until, d.messageId);
        }
    });
    if (deliveries.empty()) return std::nullopt;
    for (const auto& d : deliveries)
        if (d.redelivered()) Metrics::instance().redeliveries.fetch_add(1);
    std::optional<Delivery> first(std::move(deliveries.front()));
    if (deliveries.size() > 1) {
        std::lock_guard lock(mutex_);
        auto& ahead = stateOf(queue).leased;
        for (std::size_t i = 1; i < deliveries.size(); ++i) ahead.push_back(std::move(deliveries[i]));
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
    auto remove = [this, id = d.messageId, lease = d.lease](Session&) {
        db_.writes()("DELETE FROM messages WHERE id = ? AND lease = ?").exec(id, lease);
    };
    // The handler's outcome is committed; losing the ack only means one
    // more (idempotent) delivery, so with instant processing it need not
    // wait for a sync of its own.
    if (leaseBatch_ > 1) committer_.post(remove);
    else committer_.write(remove);
}

void EmbeddedBroker::retry(const Delivery& d, const std::string& reason)
{
    committer_.write([&](Session& s) {
        const Poco::Int64 due = clock::nowMillis() + backoff(backoffBase_, d.attempt).count();
        s << "UPDATE messages SET state = 'ready', due_at = ?, last_error = ? WHERE id = ? AND lease = ?", useRef(due),
            useRef(reason), useRef(d.messageId), useRef(d.lease), now;
    });
}

void EmbeddedBroker::deadLetter(const Delivery& d, const std::string& reason)
{
    committer_.write([&](Session& s) {
        s << "UPDATE messages SET state = 'dead', last_error = ? WHERE id = ? AND lease = ?", useRef(reason),
            useRef(d.messageId), useRef(d.lease), now;
    });
    Metrics::instance().deadLetters.fetch_add(1);
}

void EmbeddedBroker::release(const Delivery& d)
{
    committer_.write([&](Session& s) {
        const Poco::Int64 at = clock::nowMillis();
        s << "UPDATE messages SET state = 'ready', due_at = ?, attempts = MAX(attempts - 1, 0) "
             "WHERE id = ? AND lease = ?",
            useRef(at), useRef(d.messageId), useRef(d.lease), now;
    });
    notifyPublished(d.queue);
}

std::map<std::string, QueueDepth> EmbeddedBroker::depths()
{
    Session s = db_.reader();
    std::vector<std::string> queues, states;
    std::vector<Poco::Int64> counts, oldest;
    s << "SELECT queue, state, COUNT(*), MIN(created_at) FROM messages GROUP BY queue, state", into(queues),
        into(states), into(counts), into(oldest), now;
    std::map<std::string, QueueDepth> result{{"orders", {}}, {"payments", {}}};
    const std::int64_t at = clock::nowMillis();
    for (std::size_t i = 0; i < queues.size(); ++i) {
        QueueDepth& q = result[queues[i]];
        if (states[i] == "ready") q.ready = counts[i];
        else if (states[i] == "leased") q.inFlight = counts[i];
        else if (states[i] == "dead") q.dead = counts[i];
        if (states[i] != "dead") q.oldestAgeMs = std::max(q.oldestAgeMs, at - oldest[i]);
    }
    return result;
}

}  // namespace orderpay
