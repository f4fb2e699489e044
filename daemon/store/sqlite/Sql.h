#pragma once

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
/// running it, so every statement is kept prepared (Statements) and
/// Poco::Data's prepare-per-run is not used. Errors are thrown as
/// Poco::Data::SQLite's exceptions, which Database classifies (disk full,
/// read-only: 503).
///
/// Values bind to the `?` parameters in order; a statement is reset after
/// each run, so it never holds a read snapshot between runs.
class Statement {
public:
    Statement(sqlite3* db, std::string sql);
    ~Statement();
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    /// Runs a statement that returns no rows; returns the rows it changed.
    template <typename... T>
    int exec(const T&... values)
    {
        Run run(*this);
        bindAll(values...);
        while (step()) {
        }
        return changes();
    }

    /// Runs a query and calls `row(*this)` for each row; column(i) reads it.
    template <typename F, typename... T>
    int query(F&& row, const T&... values)
    {
        Run run(*this);
        bindAll(values...);
        int rows = 0;
        while (step()) {
            row(*this);
            ++rows;
        }
        return rows;
    }

    /// Columns of the current row (inside query's callback).
    std::string text(int column) const;
    std::int64_t integer(int column) const;
    bool isNull(int column) const;

    const std::string& sql() const { return sql_; }

private:
    /// Resets the statement when a run ends, thrown out of or not.
    struct Run {
        Statement& st;
        explicit Run(Statement& s) : st(s) {}
        ~Run() { st.reset(); }
    };

    template <typename... T>
    void bindAll(const T&... values)
    {
        int i = 0;
        (bind(++i, values), ...);
    }
    void bind(int i, std::string_view value);
    void bind(int i, const std::string& value) { bind(i, std::string_view(value)); }
    void bind(int i, const char* value) { bind(i, std::string_view(value)); }
    void bind(int i, std::int64_t value);
    void bind(int i, int value) { bind(i, static_cast<std::int64_t>(value)); }
    void bind(int i, std::nullptr_t);
    void bind(int i, const std::optional<std::string>& value);
    bool step();
    int changes() const;
    void reset();
    [[noreturn]] void fail(int rc) const;

    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
    std::string sql_;
};

/// The prepared statements of one connection, by SQL text. Like the
/// connection, used by one thread at a time.
class Statements {
public:
    explicit Statements(sqlite3* db) : db_(db) {}

    Statement& operator()(std::string_view sql);

private:
    sqlite3* db_;
    std::unordered_map<std::string_view, std::unique_ptr<Statement>> cache_;
};

}  // namespace orderpay::sql
