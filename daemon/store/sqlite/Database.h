#pragma once

#include "app/Settings.h"
#include "store/Sql.h"

#include <Poco/Data/Session.h>
#include <Poco/Data/SessionPool.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <string>

namespace orderpay {

/// The SQLite database: opens it in WAL mode, migrates the schema
/// (versioned by PRAGMA user_version) and hands out sessions: one writer
/// session, owned by the Committer's thread, and pooled reader sessions.
class Database {
public:
    static constexpr int kSchemaVersion = 4;

    /// SQLite's multi-thread mode, for the whole process: no mutex around
    /// each call on a connection (in the writer, locking and unlocking them
    /// was 7-9 % of its time). It asks that no connection nor statement be
    /// used by two threads at once, and none is: the writer's belongs to the
    /// Committer's thread, a pooled reader to whoever holds it, a local
    /// reader to its thread. Call before the first connection opens (main
    /// does); false if SQLite had started already and stays serialized.
    static bool useMultiThreadMode();

    explicit Database(const StoreSettings& settings);
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    /// Only the Committer's thread may use this session.
    Poco::Data::Session& writer() { return *writer_; }
    /// The writer's prepared statements (the hot paths'); the Committer's thread only.
    sql::Statements& writes() { return *writes_; }

    /// A session for reads, from a pool; never share it between threads.
    Poco::Data::Session reader();

    /// The calling thread's own read connection and its prepared
    /// statements, opened on first use and kept: the hot reads (GET by id,
    /// the workers' look-ups) then prepare nothing and wait for no pool.
    sql::Statements& localReader();

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
    void configure(Poco::Data::Session& session, bool writer);
    void migrate();

    std::string path_;
    std::string synchronous_;
    std::unique_ptr<Poco::Data::Session> writer_;
    std::unique_ptr<sql::Statements> writes_;  // finalized before the writer closes
    std::unique_ptr<Poco::Data::SessionPool> readers_;

    struct LocalReader {
        Poco::Data::Session session;
        sql::Statements statements;  // finalized before the session closes
        explicit LocalReader(const std::string& path);
    };
    std::mutex localMutex_;
    std::unordered_map<std::thread::id, std::unique_ptr<LocalReader>> localReaders_;
};

}  // namespace orderpay
