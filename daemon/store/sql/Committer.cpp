#include "store/sql/Committer.h"

#include "store/WebhookStore.h"

#include "domain/Errors.h"
#include "logging/Log.h"

#include <chrono>
#include <memory>
#include <optional>
#include <random>
#include <pthread.h>

namespace orderpay::sql {
namespace {

/// Adds the transaction's changes of status to the writer's slot of
/// status_counts: one row per status changed, for the whole batch.
void writeTally(Statements& w, int slot)
{
    for (const auto& [key, n] : w.tally.changes) {
        if (n == 0) continue;
        w("INSERT INTO status_counts (kind, status, slot, n) VALUES (?, ?, ?, ?) "
          "ON CONFLICT (kind, status, slot) DO UPDATE SET n = status_counts.n + excluded.n")
            .send(key.first, key.second, static_cast<std::int64_t>(slot), n);
    }
    w.tally.changes.clear();
}

}  // namespace

Committer::Committer(std::vector<std::unique_ptr<Writer>> writers, bool groupCommit, int maxBatch, const char* name,
                     const WebhookSubscriptions* webhooks)
    : writers_(std::move(writers)), maxBatch_(static_cast<std::size_t>(groupCommit ? maxBatch : 1)), webhooks_(webhooks)
{
    // Each writer adds its counts to a row of its own, so writers (of
    // every instance on one database) rarely wait on one another's; a
    // count is the sum of its rows.
    std::random_device random;
    for (auto& w : writers_) w->countSlot = static_cast<int>(random() % kCountSlots);
    for (std::size_t i = 0; i < writers_.size(); ++i) {
        const std::string thread = i == 0 ? name : std::string(name) + "-" + std::to_string(i + 1);
        threads_.emplace_back([this, i, thread] {
            pthread_setname_np(pthread_self(), thread.substr(0, 15).c_str());
            run(*writers_[i]);
        });
    }
}

Committer::~Committer() { stop(); }

void Committer::stop()
{
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    pending_.notify_all();
    for (auto& thread : threads_)
        if (thread.joinable()) thread.join();
    threads_.clear();
}

Committer::Stats Committer::stats() const
{
    std::lock_guard lock(mutex_);
    return stats_;
}

void Committer::Unit::finish()
{
    // Notified under the lock: the waiter may end the unit as soon as it
    // sees `done`, and it cannot see it before this unlocks.
    std::lock_guard lock(doneMutex);
    finished = true;
    doneWake.notify_one();
}

void Committer::Unit::awaitFinished()
{
    std::unique_lock lock(doneMutex);
    doneWake.wait(lock, [this] { return finished; });
}

void Committer::write(Work work)
{
    Unit unit(std::move(work));
    {
        std::lock_guard lock(mutex_);
        if (stopping_) throw StoreUnavailable("the store is shutting down");
        queue_.push_back(&unit);
    }
    pending_.notify_one();
    unit.awaitFinished();
    if (unit.error) std::rethrow_exception(unit.error);
}

std::vector<std::exception_ptr> Committer::writeAll(std::vector<Work> works)
{
    if (works.empty()) return {};
    // Units do not move (their mutexes cannot): a deque keeps them in place.
    std::deque<Unit> units;
    for (auto& work : works) units.emplace_back(std::move(work));
    {
        std::lock_guard lock(mutex_);
        if (stopping_) throw StoreUnavailable("the store is shutting down");
        // Queued together, so they share a transaction unless the batch
        // limit splits them.
        for (auto& unit : units) queue_.push_back(&unit);
    }
    pending_.notify_one();
    for (auto& unit : units) unit.awaitFinished();
    std::vector<std::exception_ptr> errors;
    errors.reserve(units.size());
    for (const auto& unit : units) errors.push_back(unit.error);
    return errors;
}

void Committer::post(Work work)
{
    auto unit = std::make_unique<Unit>(std::move(work), nullptr);
    std::lock_guard lock(mutex_);
    if (stopping_) return;  // like a crash before the commit: the work is redone
    queue_.push_back(unit.release());
    pending_.notify_one();
}

void Committer::submit(Work work, Done done)
{
    auto unit = std::make_unique<Unit>(std::move(work), std::move(done));
    {
        std::lock_guard lock(mutex_);
        if (!stopping_) {
            queue_.push_back(unit.release());
            pending_.notify_one();
            return;
        }
    }
    unit->done(std::make_exception_ptr(StoreUnavailable("the store is shutting down")));
}

void Committer::run(Writer& writer)
{
    std::deque<Unit*> batch;
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            // Drain what is queued before stopping: a caller is waiting on each.
            pending_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return;
            while (!queue_.empty() && batch.size() < maxBatch_) {
                batch.push_back(queue_.front());
                queue_.pop_front();
            }
        }
        const auto began = std::chrono::steady_clock::now();
        runBatch(writer, batch);
        for (Unit* u : batch) {
            // A waited-for unit belongs to its waiter, who may end it as
            // soon as it is released: nothing touches it after that.
            if (!u->detached) {
                u->finish();
                continue;
            }
            try {
                if (u->done) u->done(u->error);
            } catch (const std::exception& e) {
                // A callback that throws must not end the writer.
                static Poco::Logger& log = Poco::Logger::get("orderpay.store");
                logLine(log, Poco::Message::PRIO_ERROR, std::string("a commit's callback failed: ") + e.what());
            }
            delete u;
        }
        batch.clear();
        busyMicros_ += static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began).count());
    }
}

void Committer::runBatch(Writer& writer, std::deque<Unit*>& batch)
{
    // Most batches have no failing unit, so they run without savepoints:
    // SQLite copies every page a savepoint's unit changes into a statement
    // journal, in case it is rolled back, a large share of the writer's
    // time. When a unit fails, the transaction is rolled
    // back and the batch runs again with each unit in its own savepoint,
    // so the failure takes back that unit alone. A lone unit needs none.
    // A batch that lost a deadlock to another writer (PostgreSQL) runs
    // again as it was: every unit is written to run twice.
    constexpr int kConflictRuns = 5;
    bool guarded = false;
    for (int run = 0;; ++run) {
        for (Unit* u : batch) u->error = nullptr;
        const Attempt a = attempt(writer, batch, guarded);
        if (a == Attempt::Conflicted && run < kConflictRuns) {
            std::lock_guard lock(mutex_);
            ++stats_.conflicts;
            continue;
        }
        if (a == Attempt::Conflicted) {
            for (Unit* u : batch)
                if (!u->error) u->error = std::make_exception_ptr(TransientError("the transaction kept conflicting with others"));
            return;
        }
        if (a != Attempt::UnitFailed || batch.size() == 1 || guarded) return;
        guarded = true;
        std::lock_guard lock(mutex_);
        ++stats_.replays;
    }
}

Committer::Attempt Committer::attempt(Writer& writer, std::deque<Unit*>& batch, bool guarded)
{
    // While the database refuses writes, a commit that changed nothing (a
    // lease finding no message) proves nothing: count the changes.
    std::int64_t changesBefore = -1;
    bool writable = true;
    {
        std::lock_guard lock(writableMutex_);
        writable = writable_;
    }
    Statements* statements = nullptr;
    try {
        statements = &writer.statements();
        writer.begin();
        if (!writable) changesBefore = writer.changeCount();
    } catch (...) {
        return failBatch(writer, batch, std::current_exception(), false);
    }
    Statements& w = *statements;
    w.tally.changes.clear();  // what a rolled-back attempt noted is gone with it
    w.webhooks = webhooks_;
    w.webhooksQueued = false;

    std::exception_ptr environmental;
    bool unitFailed = false;
    bool conflicted = false;
    for (Unit* u : batch) {
        std::optional<StatusTally> tallied;  // guarded: what the unit's savepoint takes back
        try {
            if (guarded) {
                writer.savepoint();
                tallied = w.tally;
            }
        } catch (...) {
            environmental = std::current_exception();
            break;
        }
        try {
            u->work(w);
            if (guarded) writer.releaseSavepoint();
        } catch (const std::exception& e) {
            u->error = std::current_exception();
            if (writer.isEnvironmental(e)) {
                environmental = u->error;
                break;
            }
            if (writer.isTransient(e)) {
                conflicted = true;
                break;
            }
            unitFailed = true;
            if (!guarded) break;  // the whole batch runs again, guarded
            if (tallied) w.tally = std::move(*tallied);
            try {
                writer.rollbackToSavepoint();
                writer.releaseSavepoint();
            } catch (...) {
                environmental = std::current_exception();
                break;
            }
        }
    }

    if (!environmental && (conflicted || (unitFailed && !guarded))) {
        writer.rollback();
        if (conflicted) return Attempt::Conflicted;
        // A lone unit is done; a batch is counted when it ran again.
        std::lock_guard lock(mutex_);
        if (batch.size() == 1) ++stats_.units;
        return Attempt::UnitFailed;
    }
    if (!environmental) {
        try {
            writeTally(w, writer.countSlot);
            writer.commit();
            if (w.webhooksQueued) webhooks_->announced();
        } catch (const std::exception& e) {
            if (writer.isTransient(e)) {
                writer.rollback();
                return Attempt::Conflicted;
            }
            if (writer.isEnvironmental(e) || guarded) {
                environmental = std::current_exception();
            } else {
                // A statement sent without waiting (PostgreSQL's pipeline)
                // failed, and whose it was is known only by running each
                // unit in its savepoint.
                writer.rollback();
                std::lock_guard lock(mutex_);
                if (batch.size() == 1) {
                    batch.front()->error = std::current_exception();
                    ++stats_.units;
                }
                return Attempt::UnitFailed;
            }
        }
    }
    if (environmental) return failBatch(writer, batch, environmental, true);
    if (!writable) {
        std::int64_t changesAfter = -1;
        try {
            changesAfter = changesBefore < 0 ? -1 : writer.changeCount();
        } catch (const std::exception&) {
            changesAfter = changesBefore;  // committed all the same; the next batch will tell
        }
        if (changesBefore < 0 || changesAfter > changesBefore) noteWritable(true);
    }
    std::lock_guard lock(mutex_);
    ++stats_.transactions;
    stats_.units += batch.size();
    for (std::size_t i = 0; i < kBatchBounds.size(); ++i)
        if (batch.size() <= static_cast<std::size_t>(kBatchBounds[i])) ++stats_.batchesUpTo[i];
    return Attempt::Committed;
}

Committer::Attempt Committer::failBatch(Writer& writer, std::deque<Unit*>& batch, const std::exception_ptr& cause,
                                        bool begun)
{
    // The database, not the request, failed: nothing of this batch is kept.
    if (begun) writer.rollback();
    const std::exception_ptr classified = writer.classify(cause);
    for (Unit* u : batch) u->error = classified;
    noteWritable(false, classified);
    std::lock_guard lock(mutex_);
    ++stats_.failedCommits;
    return Attempt::Failed;
}

bool Committer::writable() const
{
    std::lock_guard lock(writableMutex_);
    return writable_;
}

void Committer::noteWritable(bool writable, const std::exception_ptr& cause)
{
    {
        std::lock_guard lock(writableMutex_);
        if (writable == writable_) return;
        writable_ = writable;
    }
    static Poco::Logger& log = Poco::Logger::get("orderpay.store");
    if (writable) {
        logLine(log, Poco::Message::PRIO_NOTICE, "the database takes writes again");
        return;
    }
    std::string why = "unknown cause";
    try {
        if (cause) std::rethrow_exception(cause);
    } catch (const std::exception& e) {
        why = e.what();
    }
    logLine(log, Poco::Message::PRIO_ERROR,
            "the database refuses writes (" + why + "); write requests are answered 503 until it takes them again");
}

}  // namespace orderpay::sql
