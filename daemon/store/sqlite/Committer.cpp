#include "store/sqlite/Committer.h"

#include "domain/Errors.h"
#include "logging/Log.h"

#include <memory>
#include <pthread.h>

namespace orderpay::sqlite {

Committer::Committer(Database& db, bool groupCommit, int maxBatch)
    : db_(db), maxBatch_(static_cast<std::size_t>(groupCommit ? maxBatch : 1))
{
    thread_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "writer");
        run();
    });
}

Committer::~Committer() { stop(); }

void Committer::stop()
{
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    pending_.notify_all();
    if (thread_.joinable()) thread_.join();
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

void Committer::run()
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
        runBatch(batch);
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
    }
}

void Committer::runBatch(std::deque<Unit*>& batch)
{
    // Most batches have no failing unit, so they run without savepoints:
    // SQLite copies every page a savepoint's unit changes into a statement
    // journal, in case it is rolled back, a large share of the writer's
    // time. When a unit fails, the transaction is rolled
    // back and the batch runs again with each unit in its own savepoint,
    // so the failure takes back that unit alone. A lone unit needs none.
    const Attempt first = attempt(batch, false);
    if (first != Attempt::UnitFailed || batch.size() == 1) return;
    for (Unit* u : batch) u->error = nullptr;
    {
        std::lock_guard lock(mutex_);
        ++stats_.replays;
    }
    attempt(batch, true);
}

Committer::Attempt Committer::attempt(std::deque<Unit*>& batch, bool guarded)
{
    sql::Statements& w = db_.writes();
    // While the database refuses writes, a commit that changed nothing (a
    // lease finding no message) proves nothing: count the changes.
    std::int64_t changesBefore = 0;
    std::exception_ptr environmental;
    try {
        w("BEGIN IMMEDIATE").exec();
        if (!writable_) changesBefore = totalChanges(w);
    } catch (...) {
        return failBatch(batch, std::current_exception(), false);
    }

    bool unitFailed = false;
    for (Unit* u : batch) {
        try {
            if (guarded) w("SAVEPOINT unit").exec();
        } catch (...) {
            environmental = std::current_exception();
            break;
        }
        try {
            u->work(w);
            if (guarded) w("RELEASE unit").exec();
        } catch (const std::exception& e) {
            u->error = std::current_exception();
            if (Database::isEnvironmental(e)) {
                environmental = u->error;
                break;
            }
            unitFailed = true;
            if (!guarded) break;  // the whole batch runs again, guarded
            try {
                w("ROLLBACK TO unit").exec();
                w("RELEASE unit").exec();
            } catch (...) {
                environmental = std::current_exception();
                break;
            }
        }
    }

    if (!environmental && unitFailed && !guarded) {
        try {
            w("ROLLBACK").exec();
            // A lone unit is done; a batch is counted when it ran again.
            std::lock_guard lock(mutex_);
            if (batch.size() == 1) ++stats_.units;
            return Attempt::UnitFailed;
        } catch (...) {
            environmental = std::current_exception();
        }
    }
    if (!environmental) {
        try {
            w("COMMIT").exec();
            if (!writable_) noteWritable(changedSince(w, changesBefore));
            std::lock_guard lock(mutex_);
            ++stats_.transactions;
            stats_.units += batch.size();
            for (std::size_t i = 0; i < kBatchBounds.size(); ++i)
                if (batch.size() <= static_cast<std::size_t>(kBatchBounds[i])) ++stats_.batchesUpTo[i];
            return Attempt::Committed;
        } catch (...) {
            environmental = std::current_exception();
        }
    }
    return failBatch(batch, environmental, true);
}

Committer::Attempt Committer::failBatch(std::deque<Unit*>& batch, const std::exception_ptr& cause, bool begun)
{
    // The disk, not the request, failed: nothing of this batch is kept.
    if (begun) {
        try {
            db_.writes()("ROLLBACK").exec();
        } catch (...) {
            // Already rolled back by SQLite itself (it does so on SQLITE_FULL
            // and SQLITE_IOERR); the transaction is gone either way.
        }
    }
    std::exception_ptr classified;
    try {
        Database::rethrowClassified(cause);
    } catch (...) {
        classified = std::current_exception();
    }
    for (Unit* u : batch) u->error = classified;
    noteWritable(false, classified);
    std::lock_guard lock(mutex_);
    ++stats_.failedCommits;
    return Attempt::Failed;
}

std::int64_t Committer::totalChanges(sql::Statements& w)
{
    std::int64_t n = 0;
    w("SELECT total_changes()").query([&](sql::Statement& row) { n = row.integer(0); });
    return n;
}

bool Committer::changedSince(sql::Statements& w, std::int64_t changesBefore)
{
    try {
        return totalChanges(w) > changesBefore;
    } catch (const std::exception&) {
        return false;  // the batch committed all the same; the next one will tell
    }
}

void Committer::noteWritable(bool writable, const std::exception_ptr& cause)
{
    if (writable == writable_) return;
    writable_ = writable;
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

}  // namespace orderpay::sqlite
