#include "store/sqlite/Sql.h"

#include <Poco/Data/SQLite/Utility.h>

#include <sqlite3.h>

#include <stdexcept>

namespace orderpay::sql {

Connection::Connection(const std::string& path)
{
    const int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    if (rc != SQLITE_OK) {
        // The message of a failed open is on the handle, which must still be closed.
        try {
            Poco::Data::SQLite::Utility::throwException(db_, rc, path);
            throw std::runtime_error("cannot open " + path);  // throwException always throws
        } catch (...) {
            sqlite3_close(db_);
            throw;
        }
    }
}

Connection::~Connection() { sqlite3_close(db_); }

void Connection::exec(std::string_view sql) { SqliteStatement(db_, std::string(sql)).exec(); }

SqliteStatement::SqliteStatement(sqlite3* db, std::string sql) : db_(db), sql_(std::move(sql))
{
    const int rc = sqlite3_prepare_v3(db_, sql_.data(), static_cast<int>(sql_.size()), SQLITE_PREPARE_PERSISTENT,
                                      &stmt_, nullptr);
    if (rc != SQLITE_OK) fail(rc);
}

SqliteStatement::~SqliteStatement() { sqlite3_finalize(stmt_); }

void SqliteStatement::fail(int rc) const
{
    // Poco's mapping of SQLite's codes (SQLITE_FULL: DatabaseFullException,
    // SQLITE_READONLY, SQLITE_IOERR...), with SQLite's message and the SQL.
    Poco::Data::SQLite::Utility::throwException(db_, rc, sql_);
    throw std::logic_error("SQLite error " + std::to_string(rc) + " not thrown");  // throwException always throws
}

void SqliteStatement::bindText(int i, std::string_view value)
{
    const int rc = sqlite3_bind_text(stmt_, i, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
    if (rc != SQLITE_OK) fail(rc);
}

void SqliteStatement::bindInteger(int i, std::int64_t value)
{
    const int rc = sqlite3_bind_int64(stmt_, i, value);
    if (rc != SQLITE_OK) fail(rc);
}

void SqliteStatement::bindNull(int i)
{
    const int rc = sqlite3_bind_null(stmt_, i);
    if (rc != SQLITE_OK) fail(rc);
}

bool SqliteStatement::step()
{
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(rc);
}

int SqliteStatement::changes() const { return sqlite3_changes(db_); }

void SqliteStatement::reset()
{
    // The step's error, if any, was thrown already; reset repeats it.
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
}

std::string SqliteStatement::text(int column) const
{
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))) : std::string();
}

std::int64_t SqliteStatement::integer(int column) const { return sqlite3_column_int64(stmt_, column); }

bool SqliteStatement::isNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

Statement& SqliteStatements::operator()(std::string_view sql)
{
    if (auto it = cache_.find(sql); it != cache_.end()) return *it->second;
    auto statement = std::make_unique<SqliteStatement>(db_, std::string(sql));
    SqliteStatement& st = *statement;
    cache_.emplace(std::string_view(st.sql()), std::move(statement));
    return st;
}

}  // namespace orderpay::sql
