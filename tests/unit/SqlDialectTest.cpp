// The shared SQL (store/sql) is written once, in SQLite's spelling; the
// PostgreSQL adapter numbers its parameters and makes its row-lock
// comments code. What it sends is checked here; that PostgreSQL takes it is
// checked by the e2e suite on a real server ("e2e-postgresql: ").
#include "store/postgresql/PgStatements.h"

#include <catch2/catch.hpp>

using orderpay::pg::translate;

TEST_CASE("the shared SQL is sent to PostgreSQL with numbered parameters", "[store][postgresql]")
{
    CHECK(translate("SELECT a FROM t WHERE b = ? AND c = ?") == "SELECT a FROM t WHERE b = $1 AND c = $2");
    CHECK(translate("SELECT 1") == "SELECT 1");
    // A question mark in a literal is text, not a parameter; '' is a quote inside one.
    CHECK(translate("SELECT '?', 'it''s ?' FROM t WHERE x = ?") == "SELECT '?', 'it''s ?' FROM t WHERE x = $1");
}

TEST_CASE("row locks that only PostgreSQL needs are comments to SQLite and code to PostgreSQL", "[store][postgresql]")
{
    CHECK(translate("SELECT status FROM orders WHERE id = ? /*FOR UPDATE*/") ==
          "SELECT status FROM orders WHERE id = $1 FOR UPDATE");
    CHECK(translate("SELECT id FROM messages WHERE q = ? LIMIT ? /*FOR UPDATE SKIP LOCKED*/") ==
          "SELECT id FROM messages WHERE q = $1 LIMIT $2 FOR UPDATE SKIP LOCKED");
    // Other comments stay comments.
    CHECK(translate("SELECT 1 /* a note */") == "SELECT 1 /* a note */");
}
