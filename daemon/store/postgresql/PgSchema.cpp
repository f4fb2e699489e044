#include "store/postgresql/PgSchema.h"

#include <stdexcept>
#include <string>
#include <vector>

namespace orderpay::pg {
namespace {

/// The advisory lock every migrating transaction takes (any number that no
/// other application on the database uses: "orderpay" in ASCII).
constexpr const char* kMigrationLock = "SELECT pg_advisory_xact_lock(8030591472429457785)";

// Each entry moves the schema from version i to i + 1, as the SQLite entry
// of the same index does. Never edit a released entry: append a new one.
const std::vector<std::vector<std::string>> kSteps = {
    {
        R"(CREATE TABLE orders (
             id TEXT PRIMARY KEY,
             status TEXT NOT NULL,
             reason TEXT,
             customer TEXT NOT NULL,
             currency TEXT NOT NULL,
             total_amount BIGINT NOT NULL,
             items TEXT NOT NULL,
             metadata TEXT NOT NULL,
             created_at TEXT NOT NULL,
             updated_at TEXT NOT NULL))",
        "CREATE INDEX orders_by_status ON orders(status, id)",
        R"(CREATE TABLE payments (
             id TEXT PRIMARY KEY,
             order_id TEXT NOT NULL REFERENCES orders(id),
             status TEXT NOT NULL,
             reason TEXT,
             amount BIGINT NOT NULL,
             currency TEXT NOT NULL,
             method TEXT NOT NULL,
             reference TEXT NOT NULL,
             dispatched BIGINT NOT NULL DEFAULT 0,
             created_at TEXT NOT NULL,
             updated_at TEXT NOT NULL))",
        "CREATE INDEX payments_by_order ON payments(order_id, id)",
        "CREATE INDEX payments_by_reference ON payments(reference, status)",
        R"(CREATE TABLE order_events (
             order_id TEXT NOT NULL,
             seq BIGINT NOT NULL,
             at TEXT NOT NULL,
             type TEXT NOT NULL,
             status TEXT,
             reason TEXT,
             step TEXT,
             payment_id TEXT,
             PRIMARY KEY (order_id, seq)))",
        R"(CREATE TABLE order_steps (
             order_id TEXT NOT NULL,
             step TEXT NOT NULL,
             completed_at TEXT NOT NULL,
             PRIMARY KEY (order_id, step)))",
        R"(CREATE TABLE stock_reservations (
             order_id TEXT NOT NULL,
             line BIGINT NOT NULL,
             sku TEXT NOT NULL,
             quantity BIGINT NOT NULL,
             PRIMARY KEY (order_id, line)))",
        R"(CREATE TABLE invoices (
             order_id TEXT PRIMARY KEY,
             amount BIGINT NOT NULL,
             currency TEXT NOT NULL,
             issued_at TEXT NOT NULL))",
        // The queue and outbox: rows come and go all the time, so autovacuum
        // visits the table after 1 % of it changed (not PostgreSQL's 20 %)
        // and pages keep room for updates in place.
        R"(CREATE TABLE messages (
             id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             queue TEXT NOT NULL,
             body TEXT NOT NULL,
             state TEXT NOT NULL DEFAULT 'ready',
             attempts BIGINT NOT NULL DEFAULT 0,
             lease BIGINT NOT NULL DEFAULT 0,
             due_at BIGINT NOT NULL,
             last_error TEXT,
             created_at BIGINT NOT NULL)
           WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01,
                 autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02))",
        "CREATE INDEX messages_due ON messages(queue, state, due_at)",
        R"(CREATE TABLE idempotency_keys (
             key TEXT PRIMARY KEY,
             request_hash TEXT NOT NULL,
             status BIGINT NOT NULL,
             location TEXT NOT NULL,
             body TEXT NOT NULL,
             created_at BIGINT NOT NULL))",
        "CREATE INDEX idempotency_by_age ON idempotency_keys(created_at)",
        "CREATE TABLE health_probe (id BIGINT PRIMARY KEY, at BIGINT NOT NULL)",
    },
    {
        R"(CREATE TABLE deliveries (
             message_id BIGINT PRIMARY KEY,
             attempts BIGINT NOT NULL,
             last_at BIGINT NOT NULL))",
        "ALTER TABLE messages ADD COLUMN exchange TEXT, ADD COLUMN routing_key TEXT, ADD COLUMN headers TEXT, "
        "ADD COLUMN message_id BIGINT",
    },
    {
        "DROP TABLE order_steps",
    },
    {
        "CREATE INDEX IF NOT EXISTS payments_by_status ON payments(status)",
    },
    {
        "ALTER TABLE orders ADD COLUMN step_due_at BIGINT",
        R"(CREATE TABLE work_counters (
             name TEXT PRIMARY KEY,
             value BIGINT NOT NULL))",
        "INSERT INTO work_counters (name, value) SELECT 'processing', COUNT(*) FROM orders WHERE status = 'processing'",
    },
    {
        "ALTER TABLE order_events ADD COLUMN instance TEXT",
        // What SQLite's single writer guarantees by itself, PostgreSQL
        // enforces for instances committing in parallel: a step's effect
        // is recorded once, and a reference is paid once.
        "CREATE UNIQUE INDEX order_events_step_once ON order_events(order_id, step) WHERE type = 'step_completed'",
        "CREATE UNIQUE INDEX payments_reference_paid_once ON payments(reference) WHERE status = 'succeeded'",
    },
    {
        // The lease and outbox claims read the oldest due messages in
        // (due_at, id) order. SQLite's index holds the rowid (id) already;
        // PostgreSQL's did not, so it sorted every ready message of the
        // queue on each claim: 5 ms a claim with 50,000 waiting.
        "CREATE INDEX messages_ready ON messages(queue, state, due_at, id)",
        "DROP INDEX messages_due",
        // The instance (instance.name) that leased or claimed a message
        // last: while it is leased or publishing, the instance holding it.
        "ALTER TABLE messages ADD COLUMN holder TEXT",
    },
    {
        // Orders and payments by status, kept by the writers: each
        // transaction adds what it changed (sql::StatusTally) to its
        // writer's row, one of 64 picked at random (writers of several
        // instances then rarely wait on one row's lock); a count is the sum
        // of its rows. Counted from the tables once, here.
        R"(CREATE TABLE status_counts (
             kind TEXT NOT NULL,
             status TEXT NOT NULL,
             slot INT NOT NULL,
             n BIGINT NOT NULL,
             PRIMARY KEY (kind, status, slot))
           WITH (fillfactor = 50, autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0))",
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
             previous_until BIGINT NOT NULL DEFAULT 0,
             enabled BIGINT NOT NULL DEFAULT 1,
             disabled_reason TEXT,
             created_at TEXT NOT NULL))",
        R"(CREATE TABLE webhook_attempts (
             id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             endpoint_id TEXT NOT NULL,
             event_id TEXT NOT NULL,
             event_type TEXT NOT NULL,
             attempt BIGINT NOT NULL,
             at TEXT NOT NULL,
             at_ms BIGINT NOT NULL,
             status_code BIGINT,
             error TEXT,
             duration_ms BIGINT NOT NULL))",
        "CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts(endpoint_id, id)",
        "CREATE INDEX webhook_attempts_by_age ON webhook_attempts(at_ms)",
    },
    {
        // Nothing: SQLite's step 10 adds webhook_outbox, read by the one
        // dispatcher that uses its file. Instances sharing this database
        // lease each delivery, so here every one is a message of the
        // 'webhooks' queue from the start.
    },
};

/// Runs `f` in one transaction holding the migration lock.
template <typename F>
auto locked(Connection& c, F&& f)
{
    c.run("BEGIN");
    try {
        c.run(kMigrationLock);
        c.run("CREATE TABLE IF NOT EXISTS orderpay_schema (version INT NOT NULL)");
        auto result = f();
        c.run("COMMIT");
        return result;
    } catch (...) {
        try {
            if (!c.broken()) c.run("ROLLBACK");
        } catch (const std::exception&) {
            // The connection broke meanwhile: the server rolls back.
        }
        throw;
    }
}

int readVersion(Connection& c)
{
    const Result r = c.exec("SELECT version FROM orderpay_schema");
    return r.rows() == 0 ? 0 : static_cast<int>(r.integer(0, 0));
}

}  // namespace

int PgSchema::version(Connection& c)
{
    return locked(c, [&] { return readVersion(c); });
}

void PgSchema::migrate(Connection& c, const std::function<void(int from)>& onStep)
{
    if (kSteps.size() != static_cast<std::size_t>(kVersion)) throw std::logic_error("a migration step is missing");
    for (bool done = false; !done;) {
        done = locked(c, [&] {
            const int version = readVersion(c);
            if (version > kVersion) {
                throw PermanentError("the PostgreSQL database has schema version " + std::to_string(version) +
                                     ", newer than this orderpayd understands (" + std::to_string(kVersion) +
                                     "): it was written by a newer release; run that release");
            }
            if (version == kVersion) return true;
            if (version > 0 && onStep) onStep(version);
            for (const auto& step : kSteps[static_cast<std::size_t>(version)]) c.run(step);
            if (version == 0) c.run("INSERT INTO orderpay_schema (version) VALUES (1)");
            else c.exec("UPDATE orderpay_schema SET version = $1", {version + 1});
            return false;
        });
    }
}

}  // namespace orderpay::pg
