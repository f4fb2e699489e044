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
    CHECK(upgrades == std::vector<int>{1, 2, 3, 4, 5});
    CHECK(pg::PgSchema::version(c) == pg::PgSchema::kVersion);
    // The tables of the current version, as SQLite's schema has them.
    for (const char* table : {"orders", "payments", "order_events", "stock_reservations", "invoices", "messages",
                              "idempotency_keys", "health_probe", "deliveries", "work_counters"}) {
        INFO(table);
        CHECK(c.exec("SELECT to_regclass($1) IS NOT NULL", {std::string(table)}).text(0, 0) == "t");
    }
    CHECK(c.exec("SELECT to_regclass('order_steps') IS NULL").text(0, 0) == "t");
    CHECK(c.exec("SELECT value FROM work_counters WHERE name = 'processing'").integer(0, 0) == 0);
    upgrades.clear();
    pg::PgSchema::migrate(c, [&](int from) { upgrades.push_back(from); });
    CHECK(upgrades.empty());
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
