#pragma once

#include "app/Settings.h"

#include <Poco/Data/Session.h>
#include <Poco/Data/SessionPool.h>

#include <memory>
#include <string>

namespace orderpay {

/// The SQLite database: opens it in WAL mode, migrates the schema
/// (versioned by PRAGMA user_version) and hands out sessions: one writer
/// session, owned by the Committer's thread, and pooled reader sessions.
class Database {
public:
    static constexpr int kSchemaVersion = 2;

    explicit Database(const StoreSettings& settings);
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    /// Only the Committer's thread may use this session.
    Poco::Data::Session& writer() { return *writer_; }

    /// A session for reads, from a pool; never share it between threads.
    Poco::Data::Session reader();

    const std::string& path() const { return path_; }

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
    std::unique_ptr<Poco::Data::SessionPool> readers_;
};

}  // namespace orderpay
