#include "store/postgresql/PgConnection.h"

#include <Poco/NumberParser.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include <poll.h>
#include <sys/socket.h>

namespace orderpay::pg {
namespace {

using Options = std::unique_ptr<PQconninfoOption, void (*)(PQconninfoOption*)>;

/// libpq's reading of `conninfo`, or what it could not parse.
Options parse(const std::string& conninfo, std::string& error)
{
    char* message = nullptr;
    Options options(PQconninfoParse(conninfo.c_str(), &message), &PQconninfoFree);
    if (message != nullptr) {
        error = message;
        while (!error.empty() && (error.back() == '\n' || error.back() == ' ')) error.pop_back();
        PQfreemem(message);
    }
    return options;
}

/// SQLSTATE classes that say the server cannot serve now, not that the
/// statement is wrong: connection exceptions (08), insufficient resources
/// (53: disk full, out of memory), operator intervention (57: shutting
/// down, starting up), a read-only transaction (25006: a standby), and a
/// system error (58: I/O).
bool unavailable(const std::string& state)
{
    const std::string cls = state.substr(0, 2);
    return cls == "08" || cls == "53" || cls == "57" || cls == "58" || state == "25006";
}

std::string trimmed(const char* message)
{
    std::string s = message != nullptr ? message : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

}  // namespace

std::int64_t Result::changed() const
{
    const char* n = PQcmdTuples(r_.get());
    return n != nullptr && *n != '\0' ? Poco::NumberParser::parse64(n) : 0;
}

std::string Result::text(int row, int column) const
{
    return std::string(PQgetvalue(r_.get(), row, column), static_cast<std::size_t>(PQgetlength(r_.get(), row, column)));
}

std::int64_t Result::integer(int row, int column) const
{
    if (isNull(row, column)) return 0;
    return Poco::NumberParser::parse64(PQgetvalue(r_.get(), row, column));
}

std::string redacted(const std::string& conninfo)
{
    std::string error;
    Options options = parse(conninfo, error);
    if (!options) return "(a connection string libpq cannot parse)";
    std::string out;
    for (const PQconninfoOption* o = options.get(); o->keyword != nullptr; ++o) {
        if (o->val == nullptr || *o->val == '\0') continue;
        const std::string keyword = o->keyword;
        const bool secret = keyword == "password" || (o->dispchar != nullptr && *o->dispchar == '*');
        out += (out.empty() ? "" : " ") + keyword + "=" + (secret ? std::string("***") : std::string(o->val));
    }
    return out.empty() ? "(libpq's defaults)" : out;
}

std::string checkConninfo(const std::string& conninfo)
{
    std::string error;
    Options options = parse(conninfo, error);
    if (options) return {};
    if (error.empty()) return "libpq cannot parse it";
    // libpq quotes the token it stumbled on, which may be part of the
    // credentials (a bad escape in a password): such a token is not shown.
    std::string secret;
    if (const auto scheme = conninfo.find("://"), at = conninfo.rfind('@');
        scheme != std::string::npos && at != std::string::npos && at > scheme)
        secret = conninfo.substr(scheme + 3, at - scheme - 3);
    if (const auto pw = conninfo.find("password"); pw != std::string::npos) secret += " " + conninfo.substr(pw);
    std::string shown;
    for (std::size_t i = 0; i < error.size();) {
        const auto open = error.find('"', i);
        const auto close = open == std::string::npos ? open : error.find('"', open + 1);
        if (close == std::string::npos) {
            shown += error.substr(i);
            break;
        }
        const std::string token = error.substr(open + 1, close - open - 1);
        const bool hidden = !secret.empty() && (secret.find(token) != std::string::npos || token.find(secret) != std::string::npos);
        shown += error.substr(i, open - i) + "\"" + (hidden ? std::string("***") : token) + "\"";
        i = close + 1;
    }
    return shown;
}

Connection::Connection(const std::string& conninfo, std::chrono::seconds connectTimeout,
                       const std::string& passwordFile, std::chrono::milliseconds silentFor,
                       const std::string& applicationName)
{
    const std::string error = checkConninfo(conninfo);
    if (!error.empty()) throw StoreUnavailable("cannot connect to PostgreSQL: " + error);
    // libpq takes the last value of a keyword: the TCP timeouts come before
    // the caller's string (which may set its own), connect_timeout and
    // passfile after it, as keywords of their own (the string may be a
    // URI). A keyword with no value is not used.
    const std::string silentMs = std::to_string(std::max<long>(1000, silentFor.count()));
    // Keepalive probes: after a third of the silence, then every second
    // (libpq counts seconds; three probes unanswered end the connection).
    const std::string idle = std::to_string(std::max<long>(1, silentFor.count() / 3000));
    const std::string timeout = std::to_string(std::max<long>(1, connectTimeout.count()));
    const char* keywords[] = {"keepalives",      "keepalives_idle",  "keepalives_interval", "keepalives_count",
                              "tcp_user_timeout", "dbname",           "connect_timeout",     "application_name",
                              "passfile",         nullptr};
    const char* values[] = {"1",
                            idle.c_str(),
                            "1",
                            "3",
                            silentMs.c_str(),
                            conninfo.c_str(),
                            timeout.c_str(),
                            applicationName.c_str(),
                            passwordFile.empty() ? nullptr : passwordFile.c_str(),
                            nullptr};
    conn_ = PQconnectdbParams(keywords, values, 1);  // expand_dbname: the dbname value is the whole string
    if (conn_ == nullptr) throw StoreUnavailable("cannot connect to PostgreSQL: out of memory");
    if (PQstatus(conn_) != CONNECTION_OK) {
        // libpq's message names host and port, never the password.
        const std::string why = trimmed(PQerrorMessage(conn_));
        PQfinish(conn_);
        conn_ = nullptr;
        throw StoreUnavailable("cannot connect to PostgreSQL (" + redacted(conninfo) + "): " + why);
    }
    endpoint_ = std::string(PQhost(conn_)) + ":" + PQport(conn_);
    // The server's notices ("relation already exists, skipping") are not
    // errors; libpq would print each on stderr.
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
}

Connection::~Connection()
{
    if (conn_ != nullptr) PQfinish(conn_);
}



bool Connection::broken() const { return failed_ || conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK; }

bool Connection::stillOpen()
{
    if (broken()) return false;
    // A server going away says why first ("terminating connection due to
    // unexpected postmaster exit"), then closes: the message is read and
    // parsed (handled as a notice while idle), then the close is read.
    for (int i = 0; i < 2; ++i) {
        if (PQconsumeInput(conn_) != 1 || PQstatus(conn_) != CONNECTION_OK) {
            failed_ = true;
            return false;
        }
        (void)PQisBusy(conn_);
    }
    return true;
}

Result Connection::check(PGresult* r, std::string_view sql)
{
    Result result(r);
    const ExecStatusType status = r != nullptr ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return result;
    const char* code = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    const std::string state = code != nullptr ? code : "";
    const std::string message = trimmed(r != nullptr ? PQresultErrorMessage(r) : PQerrorMessage(conn_));
    if (PQstatus(conn_) != CONNECTION_OK || state.empty() || unavailable(state)) {
        failed_ = failed_ || PQstatus(conn_) != CONNECTION_OK || state.empty() || state.rfind("08", 0) == 0;
        throw StoreUnavailable("PostgreSQL at " + endpoint_ + " cannot serve: " + message);
    }
    if (state.rfind("40", 0) == 0 || state == "23505") {
        // Serialization failure or deadlock, or a unique index that another
        // transaction's row, committed meanwhile, now holds (two payments
        // of one reference settling at two instances): run again, the
        // transaction sees that row and decides otherwise.
        throw TransientError("PostgreSQL at " + endpoint_ + ": " + message);
    }
    throw PgError("PostgreSQL refused " + std::string(sql.substr(0, 80)) + ": " + message, state);
}

const std::string& Connection::prepare(std::string_view sql)
{
    const std::string text(sql);
    auto found = prepared_.find(text);
    if (found != prepared_.end()) return found->second;
    const std::string name = "s" + std::to_string(++statementsNamed_);
    if (pipeline_) {
        if (PQsendPrepare(conn_, name.c_str(), text.c_str(), 0, nullptr) != 1) lost(PQerrorMessage(conn_));
        pending_.push_back({Pending::Prepare, text});
    } else {
        if (PQsendPrepare(conn_, name.c_str(), text.c_str(), 0, nullptr) != 1) lost(PQerrorMessage(conn_));
        check(lastResult(), sql);
    }
    return prepared_.emplace(text, name).first->second;
}

void Connection::awaitResult()
{
    if (answerWithin_.count() <= 0) return;  // PQgetResult blocks as long as it takes
    const auto deadline = std::chrono::steady_clock::now() + answerWithin_;
    while (PQisBusy(conn_) == 1) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            lost("no answer within " + std::to_string(answerWithin_.count()) +
                 " ms (the server process is not answering; frozen?)");
        pollfd p{PQsocket(conn_), POLLIN, 0};
        const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno != EINTR) lost(std::string("poll: ") + std::strerror(errno));
        if (ready > 0 && PQconsumeInput(conn_) != 1) lost(PQerrorMessage(conn_));
    }
}

PGresult* Connection::lastResult()
{
    PGresult* last = nullptr;
    for (;;) {
        awaitResult();
        PGresult* r = PQgetResult(conn_);
        if (r == nullptr) break;
        if (last != nullptr) PQclear(last);
        last = r;
        const ExecStatusType status = PQresultStatus(r);
        // A COPY would wait for data forever; orderpay sends none.
        if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) break;
    }
    return last;
}

void Connection::lost(const std::string& what)
{
    failed_ = true;
    // Closed at once, not when the owner next opens a new one: a server
    // that stopped answering (frozen) and comes back then reads the close
    // and rolls the transaction back. A transaction in the middle of a
    // pipeline (no Sync sent yet) is not "idle in transaction" to the
    // server, so no timeout of its would end it, nor its row locks.
    if (conn_ != nullptr && PQsocket(conn_) >= 0) ::shutdown(PQsocket(conn_), SHUT_RDWR);
    throw StoreUnavailable("the connection to PostgreSQL at " + endpoint_ + " was lost: " + trimmed(what.c_str()));
}

Result Connection::exec(std::string_view sql, const std::vector<Param>& params)
{
    if (broken()) throw StoreUnavailable("the connection to PostgreSQL at " + endpoint_ + " is broken");
    const std::string& name = prepare(sql);
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p.data());
    if (!pipeline_) {
        if (PQsendQueryPrepared(conn_, name.c_str(), static_cast<int>(values.size()), values.data(), nullptr, nullptr,
                                0) != 1)
            lost(PQerrorMessage(conn_));
        return check(lastResult(), sql);
    }
    if (PQsendQueryPrepared(conn_, name.c_str(), static_cast<int>(values.size()), values.data(), nullptr, nullptr, 0) !=
        1)
        lost(PQerrorMessage(conn_));
    pending_.push_back({Pending::Statement, std::string(sql)});
    const std::size_t mine = pending_.size() - 1;
    // The server sends what it has; the statements before this one are read first.
    if (PQsendFlushRequest(conn_) != 1 || PQflush(conn_) != 0) lost(PQerrorMessage(conn_));
    std::optional<Result> result;
    while (pendingHead_ <= mine) {
        const bool last = pendingHead_ == mine;
        std::optional<Result> r = consume();
        if (last) result = std::move(r);
    }
    if (pendingHead_ == pending_.size()) {
        pending_.clear();
        pendingHead_ = 0;
    }
    if (firstError_) std::rethrow_exception(firstError_);
    return std::move(*result);
}

std::optional<Result> Connection::consume()
{
    const Pending& p = pending_[pendingHead_];
    awaitResult();
    PGresult* r = PQgetResult(conn_);
    if (r == nullptr) lost(PQerrorMessage(conn_));
    ++pendingHead_;
    const ExecStatusType status = PQresultStatus(r);
    if (p.kind == Pending::Prepare && status != PGRES_COMMAND_OK) {
        // Skipped after an earlier error, or refused: not prepared after all
        // (a rollback keeps what was prepared, so only this undoes it).
        prepared_.erase(p.sql);
    }
    if (p.kind == Pending::Sync) {
        PQclear(r);
        if (status != PGRES_PIPELINE_SYNC) lost("out of step with the server's pipeline");
        return std::nullopt;
    }
    // Each statement's results end with a NULL.
    awaitResult();
    PGresult* end = PQgetResult(conn_);
    if (end != nullptr) {
        PQclear(end);
        PQclear(r);
        lost("a statement sent more than one result");
    }
    if (status == PGRES_PIPELINE_ABORTED) {
        PQclear(r);  // skipped after an earlier error, which is the one to report
        if (!firstError_)
            firstError_ = std::make_exception_ptr(PgError("PostgreSQL skipped " + p.sql.substr(0, 80), "25P02"));
        return std::nullopt;
    }
    try {
        Result result = check(r, p.sql);
        if (!p.keep) return result;
        kept_.emplace(std::move(result));
        return std::nullopt;
    } catch (const StoreUnavailable&) {
        throw;
    } catch (...) {
        if (!firstError_) firstError_ = std::current_exception();
        return std::nullopt;
    }
}

void Connection::run(std::string_view sql)
{
    if (broken()) throw StoreUnavailable("the connection to PostgreSQL at " + endpoint_ + " is broken");
    if (pipeline_) {
        sendCommand(sql);
        sync();
        return;
    }
    if (PQsendQuery(conn_, std::string(sql).c_str()) != 1) lost(PQerrorMessage(conn_));
    check(lastResult(), sql);
}

void Connection::enterPipeline()
{
    if (PQenterPipelineMode(conn_) != 1) lost(PQerrorMessage(conn_));
    pipeline_ = true;
}

void Connection::send(std::string_view sql, const std::vector<Param>& params)
{
    if (!pipeline_) {
        exec(sql, params);
        return;
    }
    if (broken()) throw StoreUnavailable("the connection to PostgreSQL at " + endpoint_ + " is broken");
    const std::string& name = prepare(sql);
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p.data());
    if (PQsendQueryPrepared(conn_, name.c_str(), static_cast<int>(values.size()), values.data(), nullptr, nullptr, 0) !=
        1)
        lost(PQerrorMessage(conn_));
    pending_.push_back({Pending::Statement, std::string(sql)});
}

void Connection::sendCommand(std::string_view sql, bool keep)
{
    if (keep) kept_.reset();
    if (!pipeline_) {
        if (keep) {
            if (PQsendQuery(conn_, std::string(sql).c_str()) != 1) lost(PQerrorMessage(conn_));
            kept_.emplace(check(lastResult(), sql));
        } else {
            run(sql);
        }
        return;
    }
    if (broken()) throw StoreUnavailable("the connection to PostgreSQL at " + endpoint_ + " is broken");
    const std::string text(sql);
    if (PQsendQueryParams(conn_, text.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) != 1)
        lost(PQerrorMessage(conn_));
    pending_.push_back({Pending::Statement, text, keep});
}

void Connection::sync()
{
    if (!pipeline_) return;
    if (broken()) throw StoreUnavailable("the connection to PostgreSQL at " + endpoint_ + " is broken");
    if (PQpipelineSync(conn_) != 1) lost(PQerrorMessage(conn_));
    pending_.push_back({Pending::Sync, {}});
    while (pendingHead_ < pending_.size()) consume();
    pending_.clear();
    pendingHead_ = 0;
    std::exception_ptr error = std::exchange(firstError_, nullptr);
    if (error) std::rethrow_exception(error);
}

}  // namespace orderpay::pg
