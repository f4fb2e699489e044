#pragma once

#include "domain/Errors.h"

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

/// A thin RAII layer over libpq, the C client PostgreSQL ships (Debian's
/// libpq-dev 15). Chosen over Poco's PostgreSQL connector, whose 1.11
/// release names every prepared statement by a fresh UUID (a statement per
/// run on the server), sends every parameter as text through its own
/// binding layer, and cannot reconnect a pooled session (poco issues 3915,
/// 5025, 2653): here a statement is prepared once per connection, and a
/// connection that broke is thrown away and opened again by its owner.
namespace orderpay::pg {

/// What PostgreSQL refused, with its SQLSTATE (the five-character code,
/// "23505" for a unique violation). A broken connection or a server that
/// cannot serve is StoreUnavailable instead (Connection::check).
class PgError : public PermanentError {
public:
    PgError(const std::string& what, std::string sqlstate) : PermanentError(what), sqlstate_(std::move(sqlstate)) {}
    const std::string& sqlstate() const { return sqlstate_; }

private:
    std::string sqlstate_;
};

/// One result of a statement; owns libpq's PGresult.
class Result {
public:
    explicit Result(PGresult* r) : r_(r, &PQclear) {}

    int rows() const { return PQntuples(r_.get()); }
    /// Rows an INSERT, UPDATE or DELETE changed.
    std::int64_t changed() const;
    bool isNull(int row, int column) const { return PQgetisnull(r_.get(), row, column) != 0; }
    std::string text(int row, int column) const;
    std::int64_t integer(int row, int column) const;

private:
    std::unique_ptr<PGresult, void (*)(PGresult*)> r_;
};

/// A value bound to a statement's $n: text, an integer, or NULL.
class Param {
public:
    Param(std::string_view s) : value_(s) {}
    Param(const std::string& s) : value_(s) {}
    Param(const char* s) : value_(std::string(s)) {}
    Param(std::int64_t n) : value_(std::to_string(n)) {}
    Param(int n) : value_(std::to_string(n)) {}
    Param(std::nullptr_t) {}
    Param(const std::optional<std::string>& s) : value_(s) {}

    const char* data() const { return value_ ? value_->c_str() : nullptr; }

private:
    std::optional<std::string> value_;
};

/// One connection to PostgreSQL, used by one thread at a time. Every
/// statement run through exec() is prepared on the server the first time
/// this connection runs it (named by a number of this connection's), then
/// only executed. After any failure of the connection itself it is
/// broken() for good: its owner opens a new one.
class Connection {
public:
    /// Connects to `conninfo` (a URI or key=value string), waiting at most
    /// `connectTimeout`; `passwordFile` (if not empty) is the libpq password
    /// file to read. Throws StoreUnavailable naming the server (never the
    /// password). A server that stops acknowledging what was sent (a cut
    /// link) breaks the connection after `silentFor`, and an idle
    /// connection is probed (TCP keepalives) to be found broken as soon;
    /// `conninfo` may choose otherwise (keepalives_*, tcp_user_timeout).
    /// `applicationName` is what the server shows (pg_stat_activity).
    Connection(const std::string& conninfo, std::chrono::seconds connectTimeout, const std::string& passwordFile = {},
               std::chrono::milliseconds silentFor = std::chrono::seconds(5),
               const std::string& applicationName = "orderpayd");
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    /// Runs `sql` with `params` bound to $1, $2, ... and returns its result.
    /// In pipeline mode, what was sent before it is read first; an error of
    /// one of those is thrown instead (the server skipped the rest).
    Result exec(std::string_view sql, const std::vector<Param>& params = {});
    /// Runs statements without parameters and without preparing them
    /// (BEGIN, COMMIT, a migration's DDL), and waits for them.
    void run(std::string_view sql);

    /// Pipeline mode (libpq's): statements whose result nobody reads are
    /// sent without waiting for it (send, sendCommand), and their results
    /// read at the next exec or sync: a transaction of many inserts costs
    /// one round trip to the server instead of one per statement. Call once,
    /// on a fresh connection.
    void enterPipeline();
    bool pipelined() const { return pipeline_; }
    /// Sends `sql` with `params`; its result (and error) comes with the
    /// next exec or sync. Outside pipeline mode, runs it at once.
    void send(std::string_view sql, const std::vector<Param>& params = {});
    /// Sends a statement without parameters, unprepared (BEGIN, SAVEPOINT).
    /// With `keep`, its result is kept when it is read (kept()).
    void sendCommand(std::string_view sql, bool keep = false);
    /// The result of the last statement sent with `keep`, once read (by a
    /// later exec or sync); nullopt before, or if it failed.
    const std::optional<Result>& kept() const { return kept_; }
    /// Reads every result still to come; throws the first error among them
    /// (the server skipped what followed it). The pipeline takes statements
    /// again afterwards, also after an error.
    void sync();

    /// False if the server closed the connection while nothing was asked
    /// of it (a restart, a failover): reads what arrived, without waiting.
    bool stillOpen();
    bool broken() const;
    /// How long a statement's result may take to arrive before the
    /// connection is given up as broken (a server process that stopped,
    /// frozen, while its machine still acknowledges): 0, the default, waits
    /// as long as it takes (migrations, the copy tool).
    void answerWithin(std::chrono::milliseconds bound) { answerWithin_ = bound; }
    /// host:port as connected, for messages.
    const std::string& endpoint() const { return endpoint_; }

private:
    /// Throws what `r` says went wrong, if anything did.
    Result check(PGresult* r, std::string_view sql);
    /// The prepared statement's name, preparing it (sent, in pipeline mode).
    const std::string& prepare(std::string_view sql);
    /// Marks the connection broken and throws StoreUnavailable.
    [[noreturn]] void lost(const std::string& what);
    /// Waits until PQgetResult would not block: the server sent the next
    /// result, or the connection broke (answerWithin_ bounds the wait).
    void awaitResult();
    /// PQexec's way (every result read, the last one kept), through
    /// awaitResult(): what PQexec and PQexecPrepared would block on forever.
    PGresult* lastResult();
    /// In pipeline mode: reads the results of the oldest pending entry.
    /// Returns its result (a Sync's has none); an error is thrown only if
    /// `throwErrors`, else kept in firstError_.
    std::optional<Result> consume();

    struct Pending {
        enum Kind { Statement, Prepare, Sync } kind;
        std::string sql;  // for messages
        bool keep = false;
    };
    std::optional<Result> kept_;
    bool pipeline_ = false;
    std::vector<Pending> pending_;  // sent, results not read yet, oldest first
    std::size_t pendingHead_ = 0;
    std::exception_ptr firstError_;  // the first error read since the last sync

    PGconn* conn_ = nullptr;
    std::string endpoint_;
    std::unordered_map<std::string, std::string> prepared_;  // SQL text -> statement name
    std::uint64_t statementsNamed_ = 0;
    bool failed_ = false;
    std::chrono::milliseconds answerWithin_{0};
};

/// `conninfo` with any password replaced by "***": the only form logged.
std::string redacted(const std::string& conninfo);

/// What is wrong with `conninfo` as libpq parses it (empty: nothing).
std::string checkConninfo(const std::string& conninfo);

}  // namespace orderpay::pg
