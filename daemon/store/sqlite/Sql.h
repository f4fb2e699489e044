#pragma once

#include "store/sql/Statement.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

struct sqlite3;
struct sqlite3_stmt;

namespace orderpay::sql {

/// One SQLite connection, opened read-write (created if missing) and
/// closed with this object. Like its statements, used by one thread at a
/// time.
class Connection {
public:
    /// Throws Poco::Data::SQLite's exception for what SQLite said, naming `path`.
    explicit Connection(const std::string& path);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    sqlite3* handle() const { return db_; }
    /// Runs one statement once (DDL, PRAGMA), rows ignored.
    void exec(std::string_view sql);

private:
    sqlite3* db_ = nullptr;
};

/// One SQLite statement, prepared once and run many times.
///
/// The request path and the workers run the same few statements thousands
/// of times a second, and preparing a statement costs SQLite more than
/// running it, so every statement is kept prepared (SqliteStatements) and
/// Poco::Data's prepare-per-run is not used. Errors are thrown as
/// Poco::Data::SQLite's exceptions, which Database classifies (disk full,
/// read-only: 503).
///
/// Values bind to the `?` parameters in order; a statement is reset after
/// each run, so it never holds a read snapshot between runs.
class SqliteStatement final : public Statement {
public:
    SqliteStatement(sqlite3* db, std::string sql);
    ~SqliteStatement() override;
    SqliteStatement(const SqliteStatement&) = delete;
    SqliteStatement& operator=(const SqliteStatement&) = delete;

    std::string text(int column) const override;
    std::int64_t integer(int column) const override;
    bool isNull(int column) const override;
    const std::string& sql() const override { return sql_; }

    /// The statement itself, for SQLite's own calls (EXPLAIN in the tests).
    sqlite3_stmt* handle() const { return stmt_; }

private:
    void bindText(int i, std::string_view value) override;
    void bindInteger(int i, std::int64_t value) override;
    void bindNull(int i) override;
    bool step() override;
    int changes() const override;
    void reset() override;
    [[noreturn]] void fail(int rc) const;

    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
    std::string sql_;
};

/// The prepared statements of one SQLite connection, by SQL text.
class SqliteStatements final : public Statements {
public:
    explicit SqliteStatements(sqlite3* db) : db_(db) {}

    Statement& operator()(std::string_view sql) override;

private:
    sqlite3* db_;
    std::unordered_map<std::string_view, std::unique_ptr<SqliteStatement>> cache_;
};

}  // namespace orderpay::sql
