#include "store/Database.h"

#include "domain/Errors.h"
#include "logging/Log.h"

#include <Poco/Data/SQLite/Connector.h>
#include <Poco/Data/SQLite/SQLiteException.h>
#include <Poco/Data/SQLite/Utility.h>
#include <Poco/File.h>
#include <Poco/Path.h>

#include <stdexcept>
#include <vector>

#include <sqlite3.h>

using namespace Poco::Data::Keywords;

namespace orderpay {
namespace {

// Each entry moves the schema from version i to i + 1. Never edit a
// released entry: append a new one.
const std::vector<std::vector<std::string>> kMigrations = {
    {
        // Money columns are INT64 so every layer reads them as 64-bit.
        R"(CREATE TABLE orders (
             id TEXT PRIMARY KEY,
             status TEXT NOT NULL,
             reason TEXT,
             customer TEXT NOT NULL,
             currency TEXT NOT NULL,
             total_amount INT64 NOT NULL,
             items TEXT NOT NULL,
             metadata TEXT NOT NULL,
             created_at TEXT NOT NULL,
             updated_at TEXT NOT NULL) WITHOUT ROWID)",
        "CREATE INDEX orders_by_status ON orders(status, id)",
        R"(CREATE TABLE payments (
             id TEXT PRIMARY KEY,
             order_id TEXT NOT NULL REFERENCES orders(id),
             status TEXT NOT NULL,
             reason TEXT,
             amount INT64 NOT NULL,
             currency TEXT NOT NULL,
             method TEXT NOT NULL,
             reference TEXT NOT NULL,
             dispatched INT64 NOT NULL DEFAULT 0,
             created_at TEXT NOT NULL,
             updated_at TEXT NOT NULL) WITHOUT ROWID)",
        "CREATE INDEX payments_by_order ON payments(order_id, id)",
        "CREATE INDEX payments_by_reference ON payments(reference, status)",
        R"(CREATE TABLE order_events (
             order_id TEXT NOT NULL,
             seq INT64 NOT NULL,
             at TEXT NOT NULL,
             type TEXT NOT NULL,
             status TEXT,
             reason TEXT,
             step TEXT,
             payment_id TEXT,
             PRIMARY KEY (order_id, seq)) WITHOUT ROWID)",
        // The ledger that makes a processing step's effect happen once.
        R"(CREATE TABLE order_steps (
             order_id TEXT NOT NULL,
             step TEXT NOT NULL,
             completed_at TEXT NOT NULL,
             PRIMARY KEY (order_id, step)) WITHOUT ROWID)",
        R"(CREATE TABLE stock_reservations (
             order_id TEXT NOT NULL,
             line INT64 NOT NULL,
             sku TEXT NOT NULL,
             quantity INT64 NOT NULL,
             PRIMARY KEY (order_id, line)) WITHOUT ROWID)",
        R"(CREATE TABLE invoices (
             order_id TEXT PRIMARY KEY,
             amount INT64 NOT NULL,
             currency TEXT NOT NULL,
             issued_at TEXT NOT NULL) WITHOUT ROWID)",
        // The queue (embedded broker) and outbox (RabbitMQ): a message is
        // written in the same transaction as the state it announces.
        R"(CREATE TABLE messages (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             queue TEXT NOT NULL,
             body TEXT NOT NULL,
             state TEXT NOT NULL DEFAULT 'ready',
             attempts INT64 NOT NULL DEFAULT 0,
             lease INT64 NOT NULL DEFAULT 0,
             due_at INT64 NOT NULL,
             last_error TEXT,
             created_at INT64 NOT NULL))",
        "CREATE INDEX messages_due ON messages(queue, state, due_at)",
        R"(CREATE TABLE idempotency_keys (
             key TEXT PRIMARY KEY,
             request_hash TEXT NOT NULL,
             status INT64 NOT NULL,
             location TEXT NOT NULL,
             body TEXT NOT NULL,
             created_at INT64 NOT NULL) WITHOUT ROWID)",
        "CREATE INDEX idempotency_by_age ON idempotency_keys(created_at)",
        // /health/ready writes here to prove the database takes writes.
        "CREATE TABLE health_probe (id INTEGER PRIMARY KEY, at INT64 NOT NULL)",
    },
    {
        // Deliveries of RabbitMQ messages, by message id, counted before the
        // message is handed to a worker (retry.max_attempts counts crashes).
        R"(CREATE TABLE deliveries (
             message_id INT64 PRIMARY KEY,
             attempts INT64 NOT NULL,
             last_at INT64 NOT NULL) WITHOUT ROWID)",
        // Outbox rows that are not first publications: a retry or a dead
        // letter, sent to another exchange or queue, keeping the id of the
        // message they continue.
        "ALTER TABLE messages ADD COLUMN exchange TEXT",
        "ALTER TABLE messages ADD COLUMN routing_key TEXT",
        "ALTER TABLE messages ADD COLUMN headers TEXT",
        "ALTER TABLE messages ADD COLUMN message_id INT64",
    },
    {
        // A step's step_completed event, written in the same transaction as
        // the step's effect (and, until now, its row here), is the ledger:
        // a row less per step on the single writer (issue 7).
        "DROP TABLE order_steps",
    },
    {
        // The payment counts in /metrics group by status: without an index
        // that was a scan and a sort of every payment per scrape, the sort
        // holding up to 2 MB of SQLite's heap (the soak's 10-minute run).
        "CREATE INDEX IF NOT EXISTS payments_by_status ON payments(status)",
    },
};

/// What SQLite may keep on the heap, all connections together. Each
/// connection's page cache grows towards 2 MB as the database grows, and
/// the pool opens a connection per concurrent reader: under steady traffic
/// that was a slow RSS climb for many minutes (the soak campaign with
/// RabbitMQ, issue 6: +13 % in 10 minutes, most of it page caches). Past
/// this limit SQLite reuses cache pages instead of allocating more; what it
/// drops, the kernel's page cache still holds.
/// Reached within a minute or two of steady traffic, so the RSS levels off
/// there instead of climbing for the first quarter of an hour.
constexpr sqlite3_int64 kSqliteHeapLimit = 4 * 1024 * 1024;

}  // namespace

bool Database::useMultiThreadMode() { return sqlite3_config(SQLITE_CONFIG_MULTITHREAD) == SQLITE_OK; }

std::int64_t Database::memoryUsed() { return sqlite3_memory_used(); }

std::int64_t Database::memoryHighwater() { return sqlite3_memory_highwater(0); }

std::int64_t Database::memoryLimit() { return sqlite3_soft_heap_limit64(-1); }

Database::Database(const StoreSettings& settings)
    : path_(settings.sqlitePath), synchronous_(settings.sqliteSynchronous == "normal" ? "NORMAL" : "FULL")
{
    Poco::Data::SQLite::Connector::registerConnector();
    sqlite3_soft_heap_limit64(kSqliteHeapLimit);
    const Poco::Path parent = Poco::Path(path_).parent();
    if (!parent.toString().empty() && !Poco::File(parent).exists()) {
        throw StoreUnavailable("the folder of store.sqlite.path (" + parent.toString() + ") does not exist");
    }
    writer_ = std::make_unique<Poco::Data::Session>("SQLite", path_);
    configure(*writer_, true);
    migrate();
    writes_ = std::make_unique<sql::Statements>(Poco::Data::SQLite::Utility::dbHandle(*writer_));
    readers_ = std::make_unique<Poco::Data::SessionPool>("SQLite", path_, 1, 64, 60);
}

Database::~Database()
{
    if (readers_) readers_->shutdown();
    localReaders_.clear();
    writes_.reset();
    if (writer_) writer_->close();
}

Poco::Data::Session Database::reader()
{
    Poco::Data::Session session = readers_->get();
    configure(session, false);
    return session;
}

Database::LocalReader::LocalReader(const std::string& path)
    : session("SQLite", path), statements(Poco::Data::SQLite::Utility::dbHandle(session))
{
    // Each HTTP and worker thread has one of these: without the lookaside
    // buffer (a speed-up for statements compiled on the connection, which
    // these keep prepared) each costs about 120 KB less.
    sqlite3_db_config(Poco::Data::SQLite::Utility::dbHandle(session), SQLITE_DBCONFIG_LOOKASIDE, nullptr, 0, 0);
}

sql::Statements& Database::localReader()
{
    std::lock_guard lock(localMutex_);
    auto& reader = localReaders_[std::this_thread::get_id()];
    if (!reader) {
        // A thread id is reused only after its thread ended, and with it
        // that thread's use of the connection.
        reader = std::make_unique<LocalReader>(path_);
        configure(reader->session, false);
    }
    return reader->statements;
}

void Database::configure(Poco::Data::Session& session, bool writer)
{
    // Waits out another process's write lock instead of failing at once.
    // Set through the C API: a reader runs this at every checkout from the
    // pool, and a PRAGMA would be one more statement to prepare per read.
    sqlite3_busy_timeout(Poco::Data::SQLite::Utility::dbHandle(session), 5000);
    if (writer) {
        session << "PRAGMA journal_mode = WAL", now;
        session << "PRAGMA synchronous = " + synchronous_, now;
        session << "PRAGMA foreign_keys = ON", now;
        // SQLite keeps the pages a savepoint may have to restore in a
        // statement journal, and past 64 KiB in a temporary file: while the
        // Committer put every unit in a savepoint, ~10 pwrite calls per
        // accepted order (issue 7). It still does when a batch runs again
        // after a unit failed; in memory that is a copy, not system calls.
        session << "PRAGMA temp_store = MEMORY", now;
    }
}

void Database::migrate()
{
    Poco::Data::Session& s = *writer_;
    // Each step reads the version inside its own write transaction, so
    // daemons starting together on one file migrate it once.
    for (;;) {
        s << "BEGIN IMMEDIATE", now;
        try {
            int version = 0;
            s << "PRAGMA user_version", into(version), now;
            if (version > kSchemaVersion) {
                throw PermanentError("the database " + path_ + " has schema version " + std::to_string(version) +
                                     ", newer than this orderpayd understands (" + std::to_string(kSchemaVersion) +
                                     "); was it downgraded?");
            }
            if (version == kSchemaVersion) {
                s << "COMMIT", now;
                return;
            }
            if (static_cast<std::size_t>(version) >= kMigrations.size())
                throw std::logic_error("no migration from schema version " + std::to_string(version));
            if (version > 0) {
                // An upgrade (a new database starts at 0): worth a line, as a
                // step may rewrite the whole file.
                logLine(Poco::Logger::get("orderpay.store"), Poco::Message::PRIO_NOTICE,
                        "migrating the database " + path_ + " from schema version " + std::to_string(version) +
                            " to " + std::to_string(version + 1));
            }
            for (const auto& sql : kMigrations[static_cast<std::size_t>(version)]) s << sql, now;
            s << "PRAGMA user_version = " + std::to_string(version + 1), now;
            s << "COMMIT", now;
        } catch (...) {
            s << "ROLLBACK", now;
            throw;
        }
    }
}

bool Database::isEnvironmental(const std::exception& error)
{
    using namespace Poco::Data::SQLite;
    return dynamic_cast<const DatabaseFullException*>(&error) || dynamic_cast<const ReadOnlyException*>(&error) ||
           dynamic_cast<const IOErrorException*>(&error) || dynamic_cast<const DBLockedException*>(&error) ||
           dynamic_cast<const TableLockedException*>(&error) || dynamic_cast<const CantOpenDBFileException*>(&error) ||
           dynamic_cast<const DBAccessDeniedException*>(&error) || dynamic_cast<const NoMemoryException*>(&error) ||
           dynamic_cast<const StoreUnavailable*>(&error);
}

void Database::rethrowClassified(const std::exception_ptr& error)
{
    try {
        std::rethrow_exception(error);
    } catch (const StoreUnavailable&) {
        throw;
    } catch (const Poco::Exception& e) {
        if (isEnvironmental(e)) throw StoreUnavailable("the database cannot take writes: " + e.displayText());
        throw;
    }
}

}  // namespace orderpay
