#pragma once

#include "store/sqlite/Database.h"

#include <array>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace orderpay::sqlite {

/// The single writer. Callers hand it a unit of work and wait until that
/// work has committed (and, with synchronous=FULL, is synced to disk).
/// Work submitted concurrently is batched into one transaction and one
/// sync (group commit). One unit's failure (a 409, a 404) takes back only
/// that unit: the batch is rolled back and runs again with each unit in
/// its own SAVEPOINT. So a unit may run twice before its transaction
/// commits, and must set, not add to, what it tells its caller.
///
/// Writers never contend for SQLite's lock inside one process, which
/// keeps SQLITE_BUSY out of the request path.
class Committer {
public:
    /// A unit of work: the writer's prepared statements, inside the
    /// batch's transaction.
    using Work = std::function<void(sql::Statements&)>;
    /// Told how a submitted unit ended: what it threw, or why its commit
    /// failed (StoreUnavailable); nullptr once it committed.
    using Done = std::function<void(std::exception_ptr)>;

    /// Upper bounds of the batch-size histogram (units per transaction).
    static constexpr std::array<int, 9> kBatchBounds{1, 2, 4, 8, 16, 32, 64, 128, 256};

    struct Stats {
        std::uint64_t transactions = 0;
        std::uint64_t units = 0;
        std::uint64_t failedCommits = 0;
        /// Batches run a second time, each unit in a savepoint, because a
        /// unit failed in the first.
        std::uint64_t replays = 0;
        /// Committed transactions by batch size: [i] counts those of at
        /// most kBatchBounds[i] units (cumulative, as Prometheus wants).
        std::array<std::uint64_t, kBatchBounds.size()> batchesUpTo{};
    };

    Committer(Database& db, bool groupCommit, int maxBatch);
    ~Committer();
    Committer(const Committer&) = delete;
    Committer& operator=(const Committer&) = delete;

    /// Runs `work` in a write transaction and returns once it committed.
    /// Rethrows what `work` threw; throws StoreUnavailable if the commit
    /// itself failed (nothing of `work` is then stored).
    void write(Work work);

    /// Runs several units in one transaction (one's failure takes back only it)
    /// and returns once they committed: what each threw, nullptr where it
    /// succeeded. A failed commit fails them all with StoreUnavailable.
    std::vector<std::exception_ptr> writeAll(std::vector<Work> works);

    /// Queues `work` for the next transaction and returns at once. For
    /// writes whose loss is harmless because they are redone anyway (a
    /// queue acknowledgement: without it the message is delivered again,
    /// and its handler is idempotent): they share a sync with the next
    /// waited-for write instead of costing one of their own. An error is
    /// dropped (the database's state changes are logged by the Committer).
    void post(Work work);

    /// Queues `work` for the next transaction and returns at once; `done`
    /// runs once the transaction ended (or at once, with StoreUnavailable,
    /// if the Committer is stopping). It runs on the writer's thread, so it
    /// must only hand the outcome on: an HTTP answer waits for its commit
    /// this way without holding a thread, and the batch can grow to every
    /// connection's request, not only to as many as there are threads.
    void submit(Work work, Done done);

    void stop();
    Stats stats() const;

private:
    struct Unit {
        explicit Unit(Work w) : work(std::move(w)) {}
        Unit(Work w, Done d) : work(std::move(w)), done(std::move(d)), detached(true) {}
        Work work;
        Done done;  // called (if set) when the transaction ended
        std::exception_ptr error;
        const bool detached = false;  // nobody waits: the Committer deletes it
        // Set once the unit's transaction ended. Each waiter sleeps on its
        // own: one condition variable for all would wake every waiter at
        // every commit, those of the next batch too, and each would then
        // queue for the mutex. Not a std::binary_semaphore: libstdc++'s
        // spins and sched_yield()s before it sleeps, taking the CPU from the
        // writer its waiters wait for.
        void finish();
        void awaitFinished();
        std::mutex doneMutex;
        std::condition_variable doneWake;
        bool finished = false;
    };

    void run();
    void runBatch(std::deque<Unit*>& batch);
    enum class Attempt { Committed, UnitFailed, Failed };
    /// One transaction over the batch, each unit in a savepoint if
    /// `guarded`; unguarded, it stops and rolls back at a unit's failure.
    Attempt attempt(std::deque<Unit*>& batch, bool guarded);
    /// The commit itself failed: every unit is told StoreUnavailable.
    Attempt failBatch(std::deque<Unit*>& batch, const std::exception_ptr& cause, bool begun);
    // Logs a change between taking and refusing writes, once per change:
    // a full disk refuses every request until it is freed, and one line
    // says so, not one per refused request.
    void noteWritable(bool writable, const std::exception_ptr& cause = nullptr);
    static std::int64_t totalChanges(sql::Statements& w);
    static bool changedSince(sql::Statements& w, std::int64_t changesBefore);

    Database& db_;
    const std::size_t maxBatch_;

    mutable std::mutex mutex_;
    std::condition_variable pending_;
    std::deque<Unit*> queue_;
    bool stopping_ = false;
    Stats stats_;
    bool writable_ = true;  // the last commit's outcome; the Committer's thread only
    std::thread thread_;
};

}  // namespace orderpay::sqlite
