#include "store/sqlite/Database.h"

#include "domain/Errors.h"
#include "logging/Log.h"

#include <Poco/Data/SQLite/SQLiteException.h>
#include <Poco/File.h>
#include <Poco/Path.h>

#include <stdexcept>
#include <vector>

#include <sqlite3.h>

namespace orderpay::sqlite {
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
        // a row less per step on the single writer.
        "DROP TABLE order_steps",
    },
    {
        // The payment counts in /metrics group by status: without an index
        // that is a scan and a sort of every payment per scrape, the sort
        // holding megabytes of SQLite's heap.
        "CREATE INDEX IF NOT EXISTS payments_by_status ON payments(status)",
    },
    {
        // Processing steps are durable timers: the step in progress is due
        // at this time (milliseconds since the epoch), and an order-steps
        // message due then carries it on. NULL: no step is waiting (or an
        // order that was processing when the daemon was upgraded: it
        // resumes at once).
        "ALTER TABLE orders ADD COLUMN step_due_at INT64",
        // Counts kept by the transactions that change them; 'processing'
        // (the orders in processing, bounded by orders.concurrency) is
        // read at every start instead of counting the index.
        R"(CREATE TABLE work_counters (
             name TEXT PRIMARY KEY,
             value INT64 NOT NULL) WITHOUT ROWID)",
        "INSERT INTO work_counters (name, value) SELECT 'processing', COUNT(*) FROM orders WHERE status = 'processing'",
    },
    {
        // The instance (instance.name) that wrote a step event: with several
        // daemons on one database, the events show who did what.
        "ALTER TABLE order_events ADD COLUMN instance TEXT",
    },
    {
        // The instance (instance.name) that leased or claimed a message
        // last: while it is leased or publishing, the instance holding it.
        // (PostgreSQL's step 7 also orders its messages index by id, which
        // SQLite's index, holding the rowid, already is.)
        "ALTER TABLE messages ADD COLUMN holder TEXT",
    },
    {
        // Orders and payments by status, kept by the writers: each
        // transaction adds what it changed (sql::StatusTally) to its
        // writer's row, so /status and /metrics read a few rows instead of
        // counting the tables. Counted from the tables once, here.
        R"(CREATE TABLE status_counts (
             kind TEXT NOT NULL,
             status TEXT NOT NULL,
             slot INT64 NOT NULL,
             n INT64 NOT NULL,
             PRIMARY KEY (kind, status, slot)) WITHOUT ROWID)",
        "INSERT INTO status_counts (kind, status, slot, n) SELECT 'orders', status, 0, COUNT(*) FROM orders GROUP BY status",
        "INSERT INTO status_counts (kind, status, slot, n) SELECT 'payments', status, 0, COUNT(*) FROM payments GROUP BY status",
    },
    {
        // Webhooks: the endpoints, and the log of delivery attempts. The
        // deliveries themselves are messages of the 'webhooks' queue.
        R"(CREATE TABLE webhook_endpoints (
             id TEXT PRIMARY KEY,
             url TEXT NOT NULL,
             events TEXT NOT NULL,
             secret TEXT NOT NULL,
             previous_secret TEXT,
             previous_until INT64 NOT NULL DEFAULT 0,
             enabled INT64 NOT NULL DEFAULT 1,
             disabled_reason TEXT,
             created_at TEXT NOT NULL) WITHOUT ROWID)",
        R"(CREATE TABLE webhook_attempts (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             endpoint_id TEXT NOT NULL,
             event_id TEXT NOT NULL,
             event_type TEXT NOT NULL,
             attempt INT64 NOT NULL,
             at TEXT NOT NULL,
             at_ms INT64 NOT NULL,
             status_code INT64,
             error TEXT,
             duration_ms INT64 NOT NULL))",
        "CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts(endpoint_id, id)",
        "CREATE INDEX webhook_attempts_by_age ON webhook_attempts(at_ms)",
    },
    {
        // Webhook deliveries as their events announce them: a row a
        // delivery, no other index, read in id order by the one dispatcher
        // that uses this file. A message of the 'webhooks' queue (whose
        // index every queue shares) is written only for what has to wait:
        // a retry, a delivery put off, a dead letter. One insert here costs
        // the writer far less than one into messages (docs/performance.md).
        R"(CREATE TABLE webhook_outbox (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             body TEXT NOT NULL,
             created_at INT64 NOT NULL))",
    },
};

/// What SQLite may keep on the heap, all connections together. Each
/// connection's page cache grows towards 2 MB as the database grows, and
/// every thread that reads has a connection: under steady traffic that is a
/// slow RSS climb for many minutes. Past this limit SQLite reuses cache
/// pages instead of allocating more; what it drops, the kernel's page cache
/// still holds. Reached within a minute or two of steady traffic, so the
/// RSS levels off there (docs/reliability.md, the soak).
constexpr sqlite3_int64 kSqliteHeapLimit = 4 * 1024 * 1024;

}  // namespace

bool Database::useMultiThreadMode() { return sqlite3_config(SQLITE_CONFIG_MULTITHREAD) == SQLITE_OK; }

std::int64_t Database::memoryUsed() { return sqlite3_memory_used(); }

std::int64_t Database::memoryHighwater() { return sqlite3_memory_highwater(0); }

std::int64_t Database::memoryLimit() { return sqlite3_soft_heap_limit64(-1); }

Database::Database(const StoreSettings& settings)
    : path_(settings.sqlitePath), synchronous_(settings.sqliteSynchronous == "normal" ? "NORMAL" : "FULL")
{
    sqlite3_soft_heap_limit64(kSqliteHeapLimit);
    std::string folder = Poco::Path(path_).parent().toString();
    if (folder.size() > 1 && folder.back() == '/') folder.pop_back();
    if (!folder.empty() && !Poco::File(folder).exists()) {
        throw StoreUnavailable("cannot open the database " + path_ + ": its folder " + folder + " does not exist");
    }
    try {
        writer_ = std::make_unique<sql::Connection>(path_);
        configure(*writer_, true);
        migrate();
    } catch (const Poco::Exception& e) {
        // Most often the folder or the file is not writable by this user.
        std::string why = e.message();
        if (dynamic_cast<const Poco::Data::SQLite::CantOpenDBFileException*>(&e) ||
            dynamic_cast<const Poco::Data::SQLite::ReadOnlyException*>(&e))
            why += " (can this user create and write files in " + (folder.empty() ? "." : folder) + "?)";
        throw StoreUnavailable("cannot open the database " + path_ + ": " + why);
    }
    writes_ = std::make_unique<sql::SqliteStatements>(writer_->handle());
}

Database::~Database()
{
    localReaders_.clear();
    writes_.reset();
    writer_.reset();
}

Database::LocalReader::LocalReader(const std::string& path) : connection(path), statements(connection.handle())
{
    // Each HTTP and worker thread has one of these: without the lookaside
    // buffer (a speed-up for statements compiled on the connection, which
    // these keep prepared) each costs about 120 KB less.
    sqlite3_db_config(connection.handle(), SQLITE_DBCONFIG_LOOKASIDE, nullptr, 0, 0);
}

sql::Statements& Database::localReader()
{
    std::lock_guard lock(localMutex_);
    auto& reader = localReaders_[std::this_thread::get_id()];
    if (!reader) {
        // A thread id is reused only after its thread ended, and with it
        // that thread's use of the connection.
        reader = std::make_unique<LocalReader>(path_);
        configure(reader->connection, false);
    }
    return reader->statements;
}

void Database::configure(sql::Connection& connection, bool writer)
{
    // Waits out another process's write lock instead of failing at once.
    sqlite3_busy_timeout(connection.handle(), 5000);
    if (writer) {
        connection.exec("PRAGMA journal_mode = WAL");
        connection.exec("PRAGMA synchronous = " + synchronous_);
        connection.exec("PRAGMA foreign_keys = ON");
        // SQLite keeps the pages a savepoint may have to restore in a
        // statement journal, past 64 KiB in a temporary file. The Committer
        // uses savepoints when a batch runs again after a unit failed; in
        // memory that journal is a copy, not system calls.
        connection.exec("PRAGMA temp_store = MEMORY");
    }
}

void Database::migrate()
{
    sql::Connection& c = *writer_;
    // Each step reads the version inside its own write transaction, so
    // daemons starting together on one file migrate it once.
    for (;;) {
        c.exec("BEGIN IMMEDIATE");
        try {
            int version = 0;
            sql::SqliteStatement(c.handle(), "PRAGMA user_version").query([&](sql::Statement& row) {
                version = static_cast<int>(row.integer(0));
            });
            if (version > kSchemaVersion) {
                throw PermanentError("the database " + path_ + " has schema version " + std::to_string(version) +
                                     ", newer than this orderpayd understands (" + std::to_string(kSchemaVersion) +
                                     "): it was written by a newer release; install that again, or restore a copy "
                                     "of the database from before the upgrade");
            }
            if (version == kSchemaVersion) {
                c.exec("COMMIT");
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
            for (const auto& step : kMigrations[static_cast<std::size_t>(version)]) c.exec(step);
            c.exec("PRAGMA user_version = " + std::to_string(version + 1));
            c.exec("COMMIT");
        } catch (...) {
            try {
                c.exec("ROLLBACK");
            } catch (const std::exception&) {
                // Never begun, or already rolled back by SQLite (a full disk).
            }
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

void Database::read(const std::function<void(sql::Statements&)>& f)
{
    sql::Statements& q = localReader();
    q("BEGIN").exec();
    try {
        f(q);
        q("COMMIT").exec();
    } catch (...) {
        try {
            q("ROLLBACK").exec();
        } catch (const std::exception&) {
            // Nothing was written; the snapshot ends with the next BEGIN's error at worst.
        }
        throw;
    }
}

void SqliteWriter::begin() { db_.writes()("BEGIN IMMEDIATE").exec(); }
void SqliteWriter::commit() { db_.writes()("COMMIT").exec(); }
void SqliteWriter::savepoint() { db_.writes()("SAVEPOINT unit").exec(); }
void SqliteWriter::rollbackToSavepoint() { db_.writes()("ROLLBACK TO unit").exec(); }
void SqliteWriter::releaseSavepoint() { db_.writes()("RELEASE unit").exec(); }

void SqliteWriter::rollback() noexcept
{
    try {
        db_.writes()("ROLLBACK").exec();
    } catch (...) {
        // Already rolled back by SQLite itself (it does so on SQLITE_FULL
        // and SQLITE_IOERR); the transaction is gone either way.
    }
}

std::exception_ptr SqliteWriter::classify(const std::exception_ptr& error) const
{
    try {
        Database::rethrowClassified(error);
    } catch (...) {
        return std::current_exception();
    }
}

std::int64_t SqliteWriter::changeCount()
{
    std::int64_t n = 0;
    db_.writes()("SELECT total_changes()").query([&](sql::Statement& row) { n = row.integer(0); });
    return n;
}

}  // namespace orderpay::sqlite
