#pragma once

#include "common/PeriodicThread.h"
#include "settings/Settings.h"
#include "store/postgresql/PgConnection.h"
#include "store/postgresql/PgStatements.h"
#include "store/sql/Committer.h"
#include "store/sql/Readers.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

namespace orderpay::pg {

/// Where the connections go, and whether it answered lately. While the
/// server is away a connection is tried at most every kRetryInterval: the
/// requests in between are refused at once (503), not each held for a
/// connect timeout, and the first attempt after the server's return
/// comes within that interval.
class Endpoint {
public:
    static constexpr std::chrono::milliseconds kRetryInterval{200};

    explicit Endpoint(const StoreSettings& settings);

    /// A new connection; StoreUnavailable if the server does not answer.
    std::unique_ptr<Connection> connect();
    /// "PostgreSQL database host=... dbname=...", never a password.
    const std::string& description() const { return description_; }
    std::uint64_t connects() const { return connects_.load(); }
    /// Commits whose outcome a lost connection hid and the server did not
    /// tell in time: their requests were answered 503, and may be stored.
    std::uint64_t unconfirmedCommits() const { return unconfirmedCommits_.load(); }
    void countUnconfirmedCommit() { ++unconfirmedCommits_; }
    std::uint64_t failedConnects() const { return failedConnects_.load(); }

private:
    std::string conninfo_;
    std::string passwordFile_;
    std::chrono::milliseconds silentFor_;
    std::string applicationName_;  // "orderpayd <instance.name>": who is who in pg_stat_activity
    std::string sessionSettings_;
    std::string description_;
    std::mutex mutex_;
    std::int64_t failedAt_ = 0;  // steady milliseconds of the last failure; under mutex_
    std::string failure_;        // its message; under mutex_
    std::atomic<std::uint64_t> connects_{0};
    std::atomic<std::uint64_t> failedConnects_{0};
    std::atomic<std::uint64_t> unconfirmedCommits_{0};
};

/// One connection slot: opened on first use, and opened again on the use
/// after it broke (the server restarted, failed over, or cut it).
class Session {
public:
    /// `pipeline`: the connection runs in libpq's pipeline mode (a writer's).
    explicit Session(Endpoint& endpoint, bool pipeline = false) : endpoint_(endpoint), pipeline_(pipeline) {}

    Connection& connection();
    sql::Statements& statements();
    /// Whether a connection is open and not broken (nothing is opened).
    bool healthy() const { return connection_ && !connection_->broken(); }
    /// The connection as it is, broken or not, without opening one.
    const Connection* current() const { return connection_.get(); }
    /// Drops the connection if the server closed it meanwhile (without
    /// waiting: what the server sent is read, nothing is asked).
    void forgetIfClosed();

private:
    Endpoint& endpoint_;
    const bool pipeline_;
    std::unique_ptr<PgStatements> statements_;  // of connection_; goes first
    std::unique_ptr<Connection> connection_;
};

/// The Committer's side of PostgreSQL: one writer thread's session, in
/// pipeline mode: BEGIN, a batch's inserts and updates and COMMIT go to the
/// server without waiting, and the writer waits for its reads and for the
/// commit only. An error of a statement sent without waiting comes with
/// the next read, the savepoint's release or the commit, and the batch runs
/// again, each unit in its savepoint, to find whose it was.
/// synchronous_commit is on for every connection: a commit returns once
/// the server has flushed it (and, with synchronous standbys, they have).
class PgWriter final : public sql::Writer {
public:
    explicit PgWriter(Endpoint& endpoint) : endpoint_(endpoint), session_(endpoint, true) {}

    sql::Statements& statements() override { return session_.statements(); }
    /// BEGIN, and the transaction's id, kept: a commit whose answer a lost
    /// connection took is looked up by it (verdictOf).
    void begin() override;
    void commit() override;
    void rollback() noexcept override;
    void savepoint() override { session_.connection().sendCommand("SAVEPOINT unit"); }
    void rollbackToSavepoint() override;
    void releaseSavepoint() override;
    bool isEnvironmental(const std::exception& error) const override;
    bool isTransient(const std::exception& error) const override;
    std::exception_ptr classify(const std::exception_ptr& error) const override { return error; }

    /// How long a commit whose outcome a lost connection hid waits for the
    /// server to say what became of it, before it is reported as failed.
    static constexpr std::chrono::seconds kVerdictWait{5};

private:
    /// What became of transaction `xid`, asked on a new connection
    /// (txid_status) for up to kVerdictWait: Unknown if the server would not
    /// say in time.
    enum class Verdict { Committed, Aborted, Unknown };
    Verdict verdictOf(std::int64_t xid);

    Endpoint& endpoint_;
    Session session_;
};

/// The PostgreSQL database: migrated at start (once for every instance
/// starting together), the writers the Committer drives, and a pool of
/// read sessions (store.postgresql.pool_size connections in all: half
/// writers, half readers, at least one of each).
class PgDatabase : public sql::Readers {
public:
    /// Connects and migrates; StoreUnavailable if the server does not
    /// answer, PermanentError if its schema is newer than this program's.
    explicit PgDatabase(const StoreSettings& settings);

    /// The writers for the Committer (call once).
    std::vector<std::unique_ptr<sql::Writer>> makeWriters();
    /// `f` in one REPEATABLE READ, READ ONLY transaction on a pooled session.
    void read(const std::function<void(sql::Statements&)>& f) override;
    /// `f` on a pooled session, each statement its own transaction.
    void readOutsideTransaction(const std::function<void(sql::Statements&)>& f) override;

    const std::string& description() const { return endpoint_.description(); }
    void renderMetrics(std::ostream& out) const;

    static int writerCount(int poolSize) { return poolSize < 2 ? 1 : poolSize / 2; }
    static int readerCount(int poolSize) { return poolSize < 2 ? 1 : poolSize - poolSize / 2; }

private:
    Session& acquire();
    void giveBack(Session& s);
    /// `f` on a pooled read session, given back afterwards.
    void onReader(const std::function<void(Session&)>& f);

    /// Ends the sessions of orderpay instances (any, on this database)
    /// that have waited for their client in the middle of a transaction
    /// for longer than fenceAfter_: an instance frozen (SIGSTOP) with its
    /// machine running, whose row locks would otherwise hold up the
    /// instances that took its work over for as long as it stays frozen.
    void fenceStaleSessions();

    StoreSettings settings_;
    Endpoint endpoint_;
    std::mutex poolMutex_;
    std::condition_variable poolFree_;
    std::vector<std::unique_ptr<Session>> readers_;
    std::vector<Session*> idle_;  // under poolMutex_
    std::chrono::milliseconds fenceAfter_;
    std::atomic<std::uint64_t> fenced_{0};
    PeriodicThread fence_;  // last: stopped before the sessions go
};

}  // namespace orderpay::pg
