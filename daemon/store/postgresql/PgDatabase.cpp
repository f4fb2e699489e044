#include "store/postgresql/PgDatabase.h"

#include "domain/Clock.h"
#include "logging/Log.h"
#include "store/postgresql/PgSchema.h"

#include <thread>

namespace orderpay::pg {
namespace {

/// How long a read waits for a pooled session before it is refused (503).
constexpr std::chrono::seconds kPoolWait{5};
/// libpq's floor for connect_timeout: a server that does not answer at all
/// (a cut link) is given up after this.
constexpr std::chrono::seconds kConnectTimeout{2};

/// How long a pooled session waits for a statement's result before it
/// gives the connection up (503): a server process that froze while its
/// machine still acknowledges (SIGSTOP, a hung disk) would otherwise hold
/// requests forever, as would a commit waiting for a synchronous standby
/// that is gone. Twice the silence a connection is allowed, at least 5 s:
/// above what a statement waits for a row lock held by an instance cut off
/// (the server ends that one's session after the silence).
std::chrono::milliseconds answerWithin(std::chrono::milliseconds silentFor)
{
    return std::max<std::chrono::milliseconds>(std::chrono::seconds(5), 2 * silentFor);
}

/// What each session sets first (one round trip): commits wait for the
/// server's flush (and a synchronous standby's, if it has one), and the
/// server gives up on a session whose client went silent (a cut link, a
/// lost machine) after `silentFor`, rolling its transaction back, so that
/// its row locks do not hold up the instances that took its work over:
/// not acknowledging what the server sends, not answering keepalives, gone
/// while a statement runs, or idle in a transaction (no statement of ours
/// waits on the client; a writer's transaction in the middle of its
/// pipeline has sent no Sync and is not idle to the server: the TCP
/// timeouts end that one).
std::string sessionSettings(std::chrono::milliseconds silentFor)
{
    const std::string ms = std::to_string(std::max<long>(1000, silentFor.count()));
    const std::string idle = std::to_string(std::max<long>(1, silentFor.count() / 3000));
    return "SET synchronous_commit = on; SET idle_in_transaction_session_timeout = " + ms +
           "; SET tcp_user_timeout = " + ms + "; SET tcp_keepalives_idle = " + idle +
           "; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 3; SET client_connection_check_interval = 1000";
}

}  // namespace

Endpoint::Endpoint(const StoreSettings& settings)
    : conninfo_(settings.postgresqlUri),
      passwordFile_(settings.postgresqlPasswordFile),
      silentFor_(settings.silentFor),
      // The server keeps 63 bytes of it.
      applicationName_(settings.instance.empty() ? "orderpayd" : ("orderpayd " + settings.instance).substr(0, 63)),
      sessionSettings_(sessionSettings(settings.silentFor)),
      description_("PostgreSQL database " + redacted(settings.postgresqlUri))
{
}

std::unique_ptr<Connection> Endpoint::connect()
{
    {
        std::lock_guard lock(mutex_);
        if (failedAt_ != 0 && clock::steadyMillis() - failedAt_ < kRetryInterval.count())
            throw StoreUnavailable(failure_);
    }
    try {
        auto c = std::make_unique<Connection>(conninfo_, kConnectTimeout, passwordFile_, silentFor_, applicationName_);
        c->run(sessionSettings_);
        c->answerWithin(answerWithin(silentFor_));
        ++connects_;
        std::lock_guard lock(mutex_);
        if (failedAt_ != 0) {
            failedAt_ = 0;
            static Poco::Logger& log = Poco::Logger::get("orderpay.store");
            logLine(log, Poco::Message::PRIO_NOTICE, "connected to " + description_ + " again");
        }
        return c;
    } catch (const StoreUnavailable& e) {
        ++failedConnects_;
        std::lock_guard lock(mutex_);
        if (failedAt_ == 0) {
            static Poco::Logger& log = Poco::Logger::get("orderpay.store");
            logLine(log, Poco::Message::PRIO_ERROR,
                    std::string(e.what()) + "; requests are answered 503 until it answers again");
        }
        failedAt_ = clock::steadyMillis();
        failure_ = e.what();
        throw;
    }
}

void Session::forgetIfClosed()
{
    if (connection_ && !connection_->stillOpen()) {
        statements_.reset();
        connection_.reset();
    }
}

Connection& Session::connection()
{
    if (!healthy()) {
        statements_.reset();
        connection_.reset();
        connection_ = endpoint_.connect();
        if (pipeline_) connection_->enterPipeline();
        statements_ = std::make_unique<PgStatements>(*connection_);
    }
    return *connection_;
}

sql::Statements& Session::statements()
{
    connection();
    return *statements_;
}

void PgWriter::begin()
{
    // Both sent without waiting: the id is read with the batch's first read
    // or with its commit, before the COMMIT's own answer.
    Connection& c = session_.connection();
    c.sendCommand("BEGIN");
    c.sendCommand("SELECT txid_current()", true);
}

void PgWriter::commit()
{
    Connection& c = session_.connection();
    try {
        c.sendCommand("COMMIT");
        c.sync();
    } catch (const StoreUnavailable&) {
        // The connection went with the COMMIT on its way (a server shutting
        // down, a failover): it may have committed all the same. Its callers
        // are told what happened, not a guess.
        // The id came before the COMMIT's answer, from the connection that
        // just broke; without it nothing tells what became of the COMMIT.
        std::optional<std::int64_t> xid;
        if (const Connection* broken = session_.current(); broken && broken->kept() && broken->kept()->rows() == 1)
            xid = broken->kept()->integer(0, 0);
        const Verdict verdict = xid ? verdictOf(*xid) : Verdict::Unknown;
        if (verdict == Verdict::Committed) return;
        if (verdict == Verdict::Aborted) throw;
        endpoint_.countUnconfirmedCommit();
        static Poco::Logger& log = Poco::Logger::get("orderpay.store");
        logLine(log, Poco::Message::PRIO_ERROR,
                "PostgreSQL did not say within " + std::to_string(kVerdictWait.count()) +
                    " s whether a transaction whose commit the lost connection cut off had committed: its requests "
                    "were answered 503 and may be stored all the same (a retry with the same Idempotency-Key "
                    "answers with what was stored)");
        throw;
    }
}

PgWriter::Verdict PgWriter::verdictOf(std::int64_t xid)
{
    const auto deadline = std::chrono::steady_clock::now() + kVerdictWait;
    for (;;) {
        try {
            const Result r = session_.connection().exec("SELECT txid_status($1)", {xid});
            const std::string status = r.isNull(0, 0) ? std::string() : r.text(0, 0);
            if (status == "committed") {
                static Poco::Logger& log = Poco::Logger::get("orderpay.store");
                logLine(log, Poco::Message::PRIO_NOTICE,
                        "a transaction whose commit the lost connection did not confirm had committed");
                return Verdict::Committed;
            }
            if (status == "aborted") return Verdict::Aborted;
            if (status != "in progress") return Verdict::Unknown;  // too old to tell
        } catch (const StoreUnavailable&) {
            // Not back yet.
        } catch (const std::exception&) {
            return Verdict::Unknown;
        }
        if (std::chrono::steady_clock::now() >= deadline) return Verdict::Unknown;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

void PgWriter::releaseSavepoint()
{
    // The unit's own errors surface here, before its savepoint goes.
    Connection& c = session_.connection();
    c.sendCommand("RELEASE SAVEPOINT unit");
    c.sync();
}

void PgWriter::rollbackToSavepoint()
{
    Connection& c = session_.connection();
    try {
        c.sync();  // past the unit's error: the server takes statements again
    } catch (const StoreUnavailable&) {
        throw;
    } catch (const std::exception&) {
        // The unit's error, reported already.
    }
    c.sendCommand("ROLLBACK TO SAVEPOINT unit");
    c.sync();
}

void PgWriter::rollback() noexcept
{
    try {
        if (!session_.healthy()) return;  // the server rolled the transaction back
        Connection& c = session_.connection();
        try {
            c.sync();
        } catch (const StoreUnavailable&) {
            return;
        } catch (const std::exception&) {
            // An error of the transaction being rolled back.
        }
        c.sendCommand("ROLLBACK");
        c.sync();
    } catch (...) {
        // The connection broke: the server rolled the transaction back.
    }
}

bool PgWriter::isEnvironmental(const std::exception& error) const
{
    return dynamic_cast<const StoreUnavailable*>(&error) != nullptr;
}

bool PgWriter::isTransient(const std::exception& error) const
{
    return dynamic_cast<const TransientError*>(&error) != nullptr;
}

/// How long an orderpay session may wait for its client in the middle of a
/// transaction before another instance ends it: the silence a connection
/// is allowed, at least 3 s (a busy writer pauses for milliseconds), and
/// below the wait for a result (so that a statement held up by the stale
/// session's locks gets its answer).
std::chrono::milliseconds fenceAfter(std::chrono::milliseconds silentFor)
{
    return std::max<std::chrono::milliseconds>(std::chrono::seconds(3), silentFor);
}

PgDatabase::PgDatabase(const StoreSettings& settings)
    : settings_(settings),
      endpoint_(settings),
      fenceAfter_(fenceAfter(settings.silentFor)),
      fence_("pg-fence", std::chrono::seconds(1), [this] { fenceStaleSessions(); })
{
    {
        auto c = endpoint_.connect();
        c->answerWithin(std::chrono::milliseconds(0));  // a migration takes as long as it takes
        PgSchema::migrate(*c, [&](int from) {
            static Poco::Logger& log = Poco::Logger::get("orderpay.store");
            logLine(log, Poco::Message::PRIO_NOTICE,
                    "migrating " + endpoint_.description() + " from schema version " + std::to_string(from) + " to " +
                        std::to_string(from + 1));
        });
    }
    for (int i = 0; i < readerCount(settings.postgresqlPoolSize); ++i) {
        readers_.push_back(std::make_unique<Session>(endpoint_));
        idle_.push_back(readers_.back().get());
    }
    fence_.start();
}

void PgDatabase::fenceStaleSessions()
{
    // A writer in the middle of its pipeline has sent no Sync: to the
    // server it is 'active', reading from its client, since its last
    // statement began (state_change), and no timeout of the server's ends
    // it while the client's machine answers keepalives. A healthy one
    // pauses for milliseconds. Only orderpay's sessions on this database
    // (named "orderpayd <instance>").
    static const std::string sql =
        "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE 'orderpayd%' AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend' AND xact_start IS NOT NULL AND wait_event = 'ClientRead' "
        "AND state <> 'idle' AND state_change < now() - make_interval(secs => $1::double precision / 1000)";
    std::int64_t ended = 0;
    try {
        onReader([&](Session& s) { ended = s.connection().exec(sql, {static_cast<std::int64_t>(fenceAfter_.count())}).integer(0, 0); });
    } catch (const std::exception& e) {
        // The database away: the other paths report that. Refused (a role
        // that may not end its own sessions): said once.
        static std::atomic<bool> said{false};
        if (dynamic_cast<const StoreUnavailable*>(&e) == nullptr && !said.exchange(true)) {
            static Poco::Logger& log = Poco::Logger::get("orderpay.store");
            logLine(log, Poco::Message::PRIO_WARNING, std::string("cannot end stale sessions: ") + e.what());
        }
        return;
    }
    if (ended <= 0) return;
    fenced_ += static_cast<std::uint64_t>(ended);
    static Poco::Logger& log = Poco::Logger::get("orderpay.store");
    logLine(log, Poco::Message::PRIO_WARNING,
            "ended " + std::to_string(ended) + " session(s) of an orderpay instance that had left a transaction open, "
            "waiting, for over " + std::to_string(fenceAfter_.count()) +
                " ms (frozen?): their row locks held up the work taken over from it");
}

std::vector<std::unique_ptr<sql::Writer>> PgDatabase::makeWriters()
{
    std::vector<std::unique_ptr<sql::Writer>> writers;
    for (int i = 0; i < writerCount(settings_.postgresqlPoolSize); ++i)
        writers.push_back(std::make_unique<PgWriter>(endpoint_));
    return writers;
}

Session& PgDatabase::acquire()
{
    std::unique_lock lock(poolMutex_);
    if (!poolFree_.wait_for(lock, kPoolWait, [&] { return !idle_.empty(); }))
        throw StoreUnavailable("every read connection to " + endpoint_.description() + " stayed busy");
    Session* s = idle_.back();
    idle_.pop_back();
    return *s;
}

void PgDatabase::giveBack(Session& s)
{
    {
        std::lock_guard lock(poolMutex_);
        idle_.push_back(&s);
    }
    poolFree_.notify_one();
}

void PgDatabase::read(const std::function<void(sql::Statements&)>& f)
{
    onReader([&](Session& s) {
        Connection& c = s.connection();
        c.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        try {
            f(s.statements());
            c.run("COMMIT");
        } catch (...) {
            try {
                if (!c.broken()) c.run("ROLLBACK");
            } catch (const std::exception&) {
                // Broken meanwhile: the server ends the transaction.
            }
            throw;
        }
    });
}

void PgDatabase::readOutsideTransaction(const std::function<void(sql::Statements&)>& f)
{
    onReader([&](Session& s) { f(s.statements()); });
}

void PgDatabase::onReader(const std::function<void(Session&)>& f)
{
    Session& s = acquire();
    struct Return {
        PgDatabase& db;
        Session& s;
        ~Return() { db.giveBack(s); }
    } giveBack{*this, s};
    // A pooled connection the server closed while it sat idle (a restart, a
    // failover) is replaced before use: a client is not answered 503 for
    // each stale connection of the pool once the database serves again.
    s.forgetIfClosed();
    f(s);
}

void PgDatabase::renderMetrics(std::ostream& out) const
{
    out << "# HELP orderpay_postgresql_connects_total Connections opened to PostgreSQL (again after each loss).\n"
        << "# TYPE orderpay_postgresql_connects_total counter\n"
        << "orderpay_postgresql_connects_total " << endpoint_.connects() << "\n"
        << "# HELP orderpay_postgresql_connect_failures_total Connections PostgreSQL did not take.\n"
        << "# TYPE orderpay_postgresql_connect_failures_total counter\n"
        << "orderpay_postgresql_connect_failures_total " << endpoint_.failedConnects() << "\n"
        << "# HELP orderpay_postgresql_unconfirmed_commits_total Commits a lost connection cut off whose outcome "
           "PostgreSQL did not tell in time: answered 503, perhaps stored.\n"
        << "# TYPE orderpay_postgresql_unconfirmed_commits_total counter\n"
        << "orderpay_postgresql_unconfirmed_commits_total " << endpoint_.unconfirmedCommits() << "\n"
        << "# HELP orderpay_postgresql_pool_size Connections of this instance: writers and readers.\n"
        << "# TYPE orderpay_postgresql_pool_size gauge\n"
        << "orderpay_postgresql_pool_size{role=\"writer\"} " << writerCount(settings_.postgresqlPoolSize) << "\n"
        << "orderpay_postgresql_pool_size{role=\"reader\"} " << readerCount(settings_.postgresqlPoolSize) << "\n"
        << "# HELP orderpay_postgresql_fenced_sessions_total Sessions of a frozen orderpay instance this instance "
           "ended (a transaction left open, waiting on its client).\n"
        << "# TYPE orderpay_postgresql_fenced_sessions_total counter\n"
        << "orderpay_postgresql_fenced_sessions_total " << fenced_.load() << "\n";
}

}  // namespace orderpay::pg
