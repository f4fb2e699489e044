#pragma once

#include "store/sql/Statement.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace orderpay::sql {

/// One writer connection as the Committer drives it: its statements and
/// the transaction around a batch. Each writer thread of the Committer owns
/// one. The database behind it (SQLite, PostgreSQL) says which failures are
/// its own rather than a unit's.
class Writer {
public:
    virtual ~Writer() = default;
    /// The connection's statements; may open (or reopen) the connection,
    /// throwing StoreUnavailable when it cannot.
    virtual Statements& statements() = 0;
    virtual void begin() = 0;
    virtual void commit() = 0;
    /// After a failure too: never throws.
    virtual void rollback() noexcept = 0;
    virtual void savepoint() = 0;
    virtual void rollbackToSavepoint() = 0;
    virtual void releaseSavepoint() = 0;
    /// The database, not the unit, failed (disk full, connection lost):
    /// the whole batch fails with StoreUnavailable.
    virtual bool isEnvironmental(const std::exception& error) const = 0;
    /// A conflict with another transaction (a deadlock, a serialization
    /// failure): the batch is rolled back and runs again.
    virtual bool isTransient(const std::exception& error) const = 0;
    /// `error` as callers are to see it: StoreUnavailable where the
    /// database is the cause.
    virtual std::exception_ptr classify(const std::exception_ptr& error) const = 0;
    /// Rows changed since the connection opened, or -1 if the database
    /// cannot tell (then any commit proves it takes writes).
    virtual std::int64_t changeCount() { return -1; }

    /// Its row of each count in status_counts (see Committer).
    int countSlot = 0;
};

/// The writers. Callers hand the Committer a unit of work and wait until
/// that work has committed (and is durable). Work submitted concurrently is
/// batched into one transaction and one sync (group commit). One unit's
/// failure (a 409, a 404) takes back only that unit: the batch is rolled
/// back and runs again with each unit in its own SAVEPOINT. So a unit may
/// run twice before its transaction commits, and must set, not add to, what
/// it tells its caller.
///
/// SQLite has one writer, which keeps SQLITE_BUSY out of the request path.
/// PostgreSQL has several, each a thread with its own connection taking
/// the next batch; a batch that lost a deadlock runs again.
class Committer {
public:
    /// A unit of work: the writer's prepared statements, inside the
    /// batch's transaction.
    using Work = std::function<void(Statements&)>;
    /// Told how a submitted unit ended: what it threw, or why its commit
    /// failed (StoreUnavailable); nullptr once it committed.
    using Done = std::function<void(std::exception_ptr)>;

    /// How many rows a count of status_counts is spread over.
    static constexpr int kCountSlots = 64;

    /// Upper bounds of the batch-size histogram (units per transaction).
    static constexpr std::array<int, 9> kBatchBounds{1, 2, 4, 8, 16, 32, 64, 128, 256};

    struct Stats {
        std::uint64_t transactions = 0;
        std::uint64_t units = 0;
        std::uint64_t failedCommits = 0;
        /// Batches run a second time, each unit in a savepoint, because a
        /// unit failed in the first.
        std::uint64_t replays = 0;
        /// Batches run again because they conflicted with another
        /// transaction (PostgreSQL's deadlocks and serialization failures).
        std::uint64_t conflicts = 0;
        /// Committed transactions by batch size: [i] counts those of at
        /// most kBatchBounds[i] units (cumulative, as Prometheus wants).
        std::array<std::uint64_t, kBatchBounds.size()> batchesUpTo{};
    };

    /// One thread per writer, each named `name` (the first) or `name`-N.
    /// `webhooks`: which endpoints take which events, for the units that
    /// announce them (OrderEvents); null: none do.
    Committer(std::vector<std::unique_ptr<Writer>> writers, bool groupCommit, int maxBatch, const char* name = "writer",
              const WebhookSubscriptions* webhooks = nullptr);
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
    /// Microseconds the writers spent on batches (running, committing,
    /// telling), all writers together: over an interval and per writer, the
    /// share of the time the database's writing was busy.
    std::uint64_t busyMicros() const { return busyMicros_; }
    std::size_t writerCount() const { return writers_.size(); }
    /// False from a transaction the database refused until one commits.
    bool writable() const;

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

    void run(Writer& writer);
    void runBatch(Writer& writer, std::deque<Unit*>& batch);
    enum class Attempt { Committed, UnitFailed, Conflicted, Failed };
    /// One transaction over the batch, each unit in a savepoint if
    /// `guarded`; unguarded, it stops and rolls back at a unit's failure.
    Attempt attempt(Writer& writer, std::deque<Unit*>& batch, bool guarded);
    /// The commit itself failed: every unit is told StoreUnavailable.
    Attempt failBatch(Writer& writer, std::deque<Unit*>& batch, const std::exception_ptr& cause, bool begun);
    // Logs a change between taking and refusing writes, once per change:
    // a full disk refuses every request until it is freed, and one line
    // says so, not one per refused request.
    void noteWritable(bool writable, const std::exception_ptr& cause = nullptr);

    std::vector<std::unique_ptr<Writer>> writers_;
    const std::size_t maxBatch_;
    const WebhookSubscriptions* webhooks_ = nullptr;

    mutable std::mutex mutex_;
    std::condition_variable pending_;
    std::deque<Unit*> queue_;
    bool stopping_ = false;
    Stats stats_;
    std::atomic<std::uint64_t> busyMicros_{0};
    bool writable_ = true;  // the last commit's outcome; under writableMutex_
    mutable std::mutex writableMutex_;
    std::vector<std::thread> threads_;
};

}  // namespace orderpay::sql
