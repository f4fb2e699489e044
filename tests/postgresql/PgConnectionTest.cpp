// The libpq layer against a real PostgreSQL server (the suite's, or one of
// a test's own where the test kills it).
#include "store/postgresql/PgConnection.h"

#include "PostgresqlNode.h"
#include "TempDir.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

using namespace orderpay;
using namespace std::chrono_literals;

TEST_CASE("a statement is prepared once per connection and runs with bound parameters", "[postgresql]")
{
    pg::Connection c(test::suitePostgresql().uri, 5s);
    c.run("CREATE TEMPORARY TABLE t (id BIGINT PRIMARY KEY, name TEXT, note TEXT)");
    for (std::int64_t i = 1; i <= 3; ++i) {
        const auto r = c.exec("INSERT INTO t (id, name, note) VALUES ($1, $2, $3)",
                              {i, "n" + std::to_string(i), i == 2 ? pg::Param(nullptr) : pg::Param("x'; DROP")});
        CHECK(r.changed() == 1);
    }
    const auto rows = c.exec("SELECT id, name, note FROM t WHERE id >= $1 ORDER BY id", {std::int64_t{2}});
    REQUIRE(rows.rows() == 2);
    CHECK(rows.integer(0, 0) == 2);
    CHECK(rows.text(0, 1) == "n2");
    CHECK(rows.isNull(0, 2));
    CHECK(rows.text(1, 2) == "x'; DROP");  // a parameter is a value, never SQL
    // Two statements, each prepared once though the INSERT ran three times.
    CHECK(c.exec("SELECT COUNT(*) FROM pg_prepared_statements").integer(0, 0) == 3);
}

TEST_CASE("a refused statement is a PgError with its SQLSTATE, and the connection goes on", "[postgresql]")
{
    pg::Connection c(test::suitePostgresql().uri, 5s);
    c.run("CREATE TEMPORARY TABLE u (id BIGINT PRIMARY KEY CHECK (id > 0))");
    c.exec("INSERT INTO u (id) VALUES ($1)", {1});
    try {
        c.exec("INSERT INTO u (id) VALUES ($1)", {-1});
        FAIL("a row breaking the check was accepted");
    } catch (const pg::PgError& e) {
        CHECK(e.sqlstate() == "23514");
    }
    // A key another transaction holds now: run again, the transaction sees it.
    CHECK_THROWS_AS(c.exec("INSERT INTO u (id) VALUES ($1)", {1}), TransientError);
    CHECK_FALSE(c.broken());
    CHECK(c.exec("SELECT COUNT(*) FROM u").integer(0, 0) == 1);
}

TEST_CASE("in pipeline mode writes go without waiting, a read waits for them, an error comes with the next read or sync",
          "[postgresql]")
{
    pg::Connection c(test::suitePostgresql().uri, 5s);
    c.run("CREATE TEMPORARY TABLE p (id BIGINT PRIMARY KEY CHECK (id > 0))");
    c.enterPipeline();
    c.sendCommand("BEGIN");
    for (int i = 1; i <= 100; ++i) c.send("INSERT INTO p (id) VALUES ($1)", {i});
    // A read sees what was sent before it.
    CHECK(c.exec("SELECT COUNT(*) FROM p").integer(0, 0) == 100);
    c.sendCommand("COMMIT");
    c.sync();

    // A failing statement sent without waiting: the next read throws its
    // error (the server skipped the rest), the sync too, and after a
    // rollback the connection takes statements again.
    c.sendCommand("BEGIN");
    c.send("INSERT INTO p (id) VALUES ($1)", {-5});
    c.send("INSERT INTO p (id) VALUES ($1)", {500});
    try {
        c.exec("SELECT COUNT(*) FROM p");
        FAIL("the failed insert went unnoticed");
    } catch (const pg::PgError& e) {
        CHECK(e.sqlstate() == "23514");
    }
    CHECK_THROWS_AS(c.sync(), pg::PgError);
    c.sendCommand("ROLLBACK");
    c.sync();
    CHECK_FALSE(c.broken());
    CHECK(c.exec("SELECT COUNT(*) FROM p").integer(0, 0) == 100);
    // An error found only at the commit.
    c.sendCommand("BEGIN");
    c.send("INSERT INTO p (id) VALUES ($1)", {0});
    c.sendCommand("COMMIT");
    CHECK_THROWS_AS(c.sync(), pg::PgError);
    c.run("ROLLBACK");
    CHECK(c.exec("SELECT COUNT(*) FROM p").integer(0, 0) == 100);
    // A statement first sent after an error was never prepared (the server
    // skipped its preparation too): it is prepared again when next used.
    c.sendCommand("BEGIN");
    c.send("INSERT INTO p (id) VALUES ($1)", {-7});
    c.send("UPDATE p SET id = id WHERE id = $1", {1});
    CHECK_THROWS_AS(c.sync(), pg::PgError);
    c.run("ROLLBACK");
    c.sendCommand("BEGIN");
    c.send("UPDATE p SET id = id WHERE id = $1", {1});
    c.sendCommand("COMMIT");
    CHECK_NOTHROW(c.sync());
}

TEST_CASE("connection strings: parse errors are named, passwords never shown", "[postgresql]")
{
    CHECK(pg::checkConninfo("postgresql://a:b@db1,db2/orderpay?target_session_attrs=read-write").empty());
    CHECK(pg::checkConninfo("host=db port=5432 dbname=orderpay").empty());
    CHECK_FALSE(pg::checkConninfo("postgresql://a:b@db/x?nosuchoption=1").empty());
    CHECK_FALSE(pg::checkConninfo("host = = x").empty());
    const std::string shown = pg::redacted("postgresql://orderpay:s3cret@db1:5433/orderpay");
    CHECK(shown.find("s3cret") == std::string::npos);
    CHECK(shown.find("host=db1") != std::string::npos);
    CHECK(pg::redacted("host=db password=s3cret").find("s3cret") == std::string::npos);
    // A bad escape in the password: libpq quotes the token, which is not shown.
    const std::string bad = pg::checkConninfo("postgresql://orderpay:s3c%zzret@db/orderpay");
    CHECK_FALSE(bad.empty());
    CHECK(bad.find("s3c") == std::string::npos);
    CHECK(pg::checkConninfo("postgresql://a:b@db/x?nosuchoption=1").find("nosuchoption") != std::string::npos);
}

TEST_CASE("a server that cannot be reached fails the connect in time, naming it but not the password",
          "[postgresql]")
{
    // A port nobody listens on: refused at once.
    const auto started = std::chrono::steady_clock::now();
    try {
        pg::Connection c("postgresql://orderpay:s3cret@127.0.0.1:1/orderpay", 2s);
        FAIL("connected to a closed port");
    } catch (const StoreUnavailable& e) {
        const std::string what = e.what();
        CHECK(what.find("s3cret") == std::string::npos);
        CHECK(what.find("127.0.0.1") != std::string::npos);
    }
    CHECK(std::chrono::steady_clock::now() - started < 5s);
}

TEST_CASE("a server that goes away breaks the connection: StoreUnavailable, then a new one once it is back",
          "[postgresql]")
{
    test::TempDir dir;
    test::PrivatePostgresql server(dir.file("pg"));
    pg::Connection c(server.node().uri, 5s);
    CHECK(c.exec("SELECT 1").integer(0, 0) == 1);
    REQUIRE(server.node().run("kill"));
    CHECK_THROWS_AS(c.exec("SELECT 1"), StoreUnavailable);
    CHECK(c.broken());
    CHECK_THROWS_AS(c.exec("SELECT 1"), StoreUnavailable);  // stays broken: its owner opens another
    CHECK_THROWS_AS(pg::Connection(server.node().uri, 2s), StoreUnavailable);
    REQUIRE(server.node().run("restart"));
    pg::Connection again(server.node().uri, 5s);
    CHECK(again.exec("SELECT 1").integer(0, 0) == 1);
}
