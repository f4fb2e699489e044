// The schema's numbered steps on a real PostgreSQL database.
#include "store/postgresql/PgSchema.h"

#include "PostgresqlNode.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

using namespace orderpay;
using namespace std::chrono_literals;

TEST_CASE("a new database is migrated to the current version, and opening it again migrates nothing", "[postgresql]")
{
    test::TestDatabase db;
    pg::Connection c(db.uri(), 5s);
    CHECK(pg::PgSchema::version(c) == 0);
    std::vector<int> upgrades;
    pg::PgSchema::migrate(c, [&](int from) { upgrades.push_back(from); });
    // Every step after the first is told (as with SQLite, where they are logged).
    CHECK(upgrades == std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9});
    CHECK(pg::PgSchema::version(c) == pg::PgSchema::kVersion);
    // The tables of the current version, as SQLite's schema has them (but
    // webhook_outbox, which only SQLite keeps).
    for (const char* table : {"orders", "payments", "order_events", "stock_reservations", "invoices", "messages",
                              "idempotency_keys", "health_probe", "deliveries", "work_counters", "status_counts",
                              "webhook_endpoints", "webhook_attempts"}) {
        INFO(table);
        CHECK(c.exec("SELECT to_regclass($1) IS NOT NULL", {std::string(table)}).text(0, 0) == "t");
    }
    CHECK(c.exec("SELECT to_regclass('order_steps') IS NULL").text(0, 0) == "t");
    CHECK(c.exec("SELECT value FROM work_counters WHERE name = 'processing'").integer(0, 0) == 0);
    upgrades.clear();
    pg::PgSchema::migrate(c, [&](int from) { upgrades.push_back(from); });
    CHECK(upgrades.empty());
}

TEST_CASE("a claim of due messages reads them in order from the index, with no sort of the waiting ones",
          "[postgresql]")
{
    test::TestDatabase db;
    pg::Connection c(db.uri(), 5s);
    pg::PgSchema::migrate(c);
    // A backlog: sorting it on every claim cost 5 ms a claim at 50,000.
    c.run("INSERT INTO messages (queue, body, state, due_at, created_at) "
          "SELECT 'orders', '{}', 'ready', n % 1000, n FROM generate_series(1, 20000) AS n");
    c.run("ANALYZE messages");
    const pg::Result plan = c.exec(
        "EXPLAIN SELECT id, body, attempts, lease, due_at FROM messages WHERE queue = 'orders' AND state = 'ready' "
        "AND due_at <= 5000 ORDER BY due_at, id LIMIT 64 FOR UPDATE SKIP LOCKED");
    std::string text;
    for (int i = 0; i < plan.rows(); ++i) text += plan.text(i, 0) + "\n";
    INFO(text);
    CHECK(text.find("messages_ready") != std::string::npos);
    CHECK(text.find("Sort") == std::string::npos);
}

TEST_CASE("instances starting together on one database migrate it once", "[postgresql]")
{
    test::TestDatabase db;
    constexpr int kInstances = 4;
    std::atomic<int> steps{0};
    std::atomic<int> failures{0};
    std::vector<std::thread> instances;
    for (int i = 0; i < kInstances; ++i) {
        instances.emplace_back([&] {
            try {
                pg::Connection c(db.uri(), 5s);
                pg::PgSchema::migrate(c, [&](int) { ++steps; });
            } catch (const std::exception&) {
                ++failures;
            }
        });
    }
    for (auto& t : instances) t.join();
    CHECK(failures == 0);
    // Each instance is told of the steps it ran; those after the first
    // are kVersion - 1 in all, not as many per instance.
    CHECK(steps == pg::PgSchema::kVersion - 1);
    pg::Connection c(db.uri(), 5s);
    CHECK(pg::PgSchema::version(c) == pg::PgSchema::kVersion);
}

TEST_CASE("a database of a newer version is refused", "[postgresql]")
{
    test::TestDatabase db;
    pg::Connection c(db.uri(), 5s);
    pg::PgSchema::migrate(c);
    c.run("UPDATE orderpay_schema SET version = 99");
    try {
        pg::PgSchema::migrate(c);
        FAIL("a newer schema was accepted");
    } catch (const PermanentError& e) {
        CHECK(std::string(e.what()).find("99") != std::string::npos);
    }
}
