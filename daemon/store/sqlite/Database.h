#pragma once

#include "settings/Settings.h"
#include "store/sql/Committer.h"
#include "store/sql/Readers.h"
#include "store/sqlite/Sql.h"

#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

namespace orderpay::sqlite {

/// The SQLite database: opens it in WAL mode, migrates the schema
/// (versioned by PRAGMA user_version) and hands out connections: one
/// writer, owned by the Committer's thread, and one reader per thread that
/// reads.
class Database : public sql::Readers {
public:
    static constexpr int kSchemaVersion = 10;

    /// SQLite's multi-thread mode, for the whole process: no mutex around
    /// each call on a connection (locking and unlocking them was a visible
    /// share of the writer's time). It asks that no connection nor statement
    /// be used by two threads at once, and none is: the writer's belongs to
    /// the Committer's thread, a reader to its thread. Call before the first
    /// connection opens (main does); false if SQLite had started already
    /// and stays serialized.
    static bool useMultiThreadMode();

    /// Throws StoreUnavailable if the database cannot be opened or written
    /// (naming its path), PermanentError if its schema is newer than this
    /// program's.
    explicit Database(const StoreSettings& settings);
    ~Database() override;
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    /// The writer's prepared statements; the Committer's thread only.
    sql::Statements& writes() { return *writes_; }

    /// The calling thread's own read connection and its prepared
    /// statements, opened on first use and kept: reads then prepare nothing
    /// and wait for no pool.
    sql::Statements& localReader();
    /// `f` in one read transaction on localReader().
    void read(const std::function<void(sql::Statements&)>& f) override;
    void readOutsideTransaction(const std::function<void(sql::Statements&)>& f) override { f(localReader()); }

    const std::string& path() const { return path_; }

    /// Bytes SQLite holds on the heap (page caches, schemas, statements)
    /// in this process, and the most it has held.
    static std::int64_t memoryUsed();
    static std::int64_t memoryHighwater();
    /// What SQLite tries to stay under: past it, page caches reuse their
    /// pages instead of growing (statements and schemas may still exceed it).
    static std::int64_t memoryLimit();

    /// Turns an SQLite exception into StoreUnavailable where the cause is
    /// the environment (disk full, read-only, I/O, locked), and rethrows it.
    [[noreturn]] static void rethrowClassified(const std::exception_ptr& error);
    static bool isEnvironmental(const std::exception& error);

private:
    void configure(sql::Connection& connection, bool writer);
    void migrate();

    std::string path_;
    std::string synchronous_;
    std::unique_ptr<sql::Connection> writer_;
    std::unique_ptr<sql::Statements> writes_;  // finalized before the writer closes

    struct LocalReader {
        sql::Connection connection;
        sql::SqliteStatements statements;  // finalized before the connection closes
        explicit LocalReader(const std::string& path);
    };
    std::mutex localMutex_;
    std::unordered_map<std::thread::id, std::unique_ptr<LocalReader>> localReaders_;
};

/// The Committer's side of the database: the single writer connection.
class SqliteWriter final : public sql::Writer {
public:
    explicit SqliteWriter(Database& db) : db_(db) {}

    sql::Statements& statements() override { return db_.writes(); }
    void begin() override;
    void commit() override;
    void rollback() noexcept override;
    void savepoint() override;
    void rollbackToSavepoint() override;
    void releaseSavepoint() override;
    bool isEnvironmental(const std::exception& error) const override { return Database::isEnvironmental(error); }
    bool isTransient(const std::exception&) const override { return false; }  // one writer: nothing to conflict with
    std::exception_ptr classify(const std::exception_ptr& error) const override;
    std::int64_t changeCount() override;

private:
    Database& db_;
};

}  // namespace orderpay::sqlite
