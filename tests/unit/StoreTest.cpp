#include "domain/Clock.h"
#include "domain/Errors.h"
#include "domain/Ids.h"
#include "store/sql/SqlApiStore.h"
#include "store/sql/SqlHealth.h"

#include "TestStore.h"

#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

using namespace std::chrono_literals;

using namespace orderpay;
using orderpay::sql::Committer;
using orderpay::sqlite::Database;

namespace {

struct Fixture : test::TestStore {
    ApiStore& api() { return store->api(); }
    WorkStore& work() { return store->work(); }

    Order newOrder()
    {
        Order o;
        o.id = ids::newOrderId();
        o.customer = "c";
        o.currency = "EUR";
        o.items = {{"A", 2, 1250}};
        o.totalAmount = 2500;
        o.createdAt = o.updatedAt = clock::nowRfc3339();
        test::createOrder(api(), o);
        return o;
    }

    Payment payment(const std::string& orderId, std::int64_t amount, const std::string& reference = "r")
    {
        Payment p;
        p.id = ids::newPaymentId();
        p.orderId = orderId;
        p.amount = amount;
        p.currency = "EUR";
        p.method = "card";
        p.reference = reference;
        p.createdAt = p.updatedAt = clock::nowRfc3339();
        return p;
    }

    std::string text(const std::string& sql)
    {
        std::string t;
        db().localReader()(sql).query([&](sql::Statement& row) { t = row.text(0); });
        return t;
    }
};

/// Takes back what schema version 8 added: the counts by status.
void dropStatusCounts(sql::Statements& w) { w("DROP TABLE status_counts").exec(); }
/// Takes back what schema versions 9 and 10 added: the webhook endpoints,
/// log and outbox.
void dropWebhookTables(sql::Statements& w)
{
    w("DROP TABLE webhook_outbox").exec();
    w("DROP TABLE webhook_attempts").exec();
    w("DROP TABLE webhook_endpoints").exec();
}

}  // namespace

TEST_CASE("the schema is migrated once and versioned", "[store]")
{
    Fixture f;
    CHECK(f.count("PRAGMA user_version") == Database::kSchemaVersion);
    CHECK(f.text("PRAGMA journal_mode") == "wal");
    // synchronous=FULL on the writer: a commit is synced before it returns.
    std::int64_t synchronous = 0;
    f.committer().write([&](sql::Statements& w) {
        w("PRAGMA synchronous").query([&](sql::Statement& row) { synchronous = row.integer(0); });
    });
    CHECK(synchronous == 2);
    // Opening again does not migrate again (it would fail on CREATE TABLE).
    f.close();
    CHECK_NOTHROW(Database(f.settings));
}

TEST_CASE("a version 2 database loses its step ledger table and keeps resuming orders after their last step",
          "[store]")
{
    Fixture f;
    // An order half processed by a version 2 daemon: its first step's ledger
    // row and step_completed event, written in one transaction, and the
    // second step started (that daemon slept through it).
    const Order o = f.newOrder();
    REQUIRE(test::advance(f.work(), o.id, "", test::slowPlan()).started);
    f.dueNow(o.id);
    REQUIRE(test::advance(f.work(), o.id, "validate", test::slowPlan()).completed ==
            std::vector<std::string>{"validate"});
    f.committer().write([&](sql::Statements& w) {
        // What versions 3 to 10 added, taken back.
        dropWebhookTables(w);
        dropStatusCounts(w);
        w("ALTER TABLE messages DROP COLUMN holder").exec();
        w("ALTER TABLE order_events DROP COLUMN instance").exec();
        w("ALTER TABLE orders DROP COLUMN step_due_at").exec();
        w("DROP TABLE work_counters").exec();
        w("DELETE FROM messages WHERE queue = 'order-steps'").exec();
        w("CREATE TABLE order_steps (order_id TEXT NOT NULL, step TEXT NOT NULL, completed_at TEXT NOT NULL, "
          "PRIMARY KEY (order_id, step)) WITHOUT ROWID")
            .exec();
        w("INSERT INTO order_steps VALUES (?, 'validate', ?)").exec(o.id, clock::nowRfc3339());
        w("PRAGMA user_version = 2").exec();
    });
    f.close();
    f.open();  // migrates
    CHECK(f.count("PRAGMA user_version") == Database::kSchemaVersion);
    CHECK(f.count("SELECT COUNT(*) FROM sqlite_schema WHERE name = 'order_steps'") == 0);
    CHECK(f.count("SELECT value FROM work_counters WHERE name = 'processing'") == 1);
    // Its message (the old daemon's, on the orders queue) resumes it at the
    // step in progress, at once: it has no timer.
    const auto rest = test::advance(f.work(), o.id, "", test::slowPlan());
    CHECK_FALSE(rest.stale);
    CHECK(rest.completed == std::vector<std::string>{"reserve_stock"});
    CHECK(rest.begun == std::vector<std::string>{"prepare_invoice"});
    f.dueNow(o.id);
    CHECK(test::advance(f.work(), o.id, "prepare_invoice", test::slowPlan()).finished);
    CHECK(f.count("SELECT COUNT(*) FROM order_events WHERE type = 'step_completed' AND order_id = '" + o.id + "'") ==
          3);
    CHECK(f.count("SELECT COUNT(*) FROM order_events WHERE type = 'step_started' AND order_id = '" + o.id + "'") ==
          3);
    CHECK(f.count("SELECT value FROM work_counters WHERE name = 'processing'") == 0);
}

TEST_CASE("SQLite runs in multi-thread mode: no mutex around each call on a connection", "[store]")
{
    Fixture f;
    // The unit tests' main, like the daemon's, asks for it before any
    // connection opens; in serialized mode each connection has a mutex.
    sql::Connection connection(f.settings.sqlitePath);
    CHECK(sqlite3_db_mutex(connection.handle()) == nullptr);
}

TEST_CASE("a failing unit of a group commit rolls back alone", "[store]")
{
    Fixture f;
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int i = 0; i < 16; ++i) {
        threads.emplace_back([&, i] {
            try {
                f.committer().write([&](sql::Statements& w) {
                    w("INSERT INTO health_probe (id, at) VALUES (?, 0)").exec(i);
                    if (i % 4 == 0) throw Conflict("unit " + std::to_string(i) + " refuses");
                });
            } catch (const Conflict&) {
                ++failures;
            }
        });
    }
    for (auto& t : threads) t.join();
    CHECK(failures == 4);
    CHECK(f.count("SELECT COUNT(*) FROM health_probe") == 12);
    CHECK(f.committer().stats().units == 16);
}

namespace {

/// Holds the writer inside a unit until release(), so that what is
/// submitted meanwhile forms the next batch.
struct WriterHold {
    explicit WriterHold(Committer& c)
    {
        thread = std::thread([&] {
            c.write([&](sql::Statements&) {
                entered.set_value();
                released.get_future().wait();
            });
        });
        entered.get_future().wait();
    }
    void release()
    {
        released.set_value();
        thread.join();
    }
    std::promise<void> entered, released;
    std::thread thread;
};

/// Open files of this process that have no name any more: SQLite's
/// temporary files (a statement journal that outgrew memory among them).
int unlinkedOpenFiles()
{
    int n = 0;
    for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        const std::string target = std::filesystem::read_symlink(fd.path(), ec).string();
        if (!ec && target.ends_with(" (deleted)")) ++n;
    }
    return n;
}

}  // namespace

TEST_CASE("a lone failing unit leaves nothing behind, and its batch is not run again", "[store]")
{
    Fixture f;
    int runs = 0;
    CHECK_THROWS_AS(f.committer().write([&](sql::Statements& w) {
        ++runs;
        w("INSERT INTO health_probe (id, at) VALUES (7, 0)").exec();
        throw Conflict("refused after writing");
    }),
                    Conflict);
    CHECK(runs == 1);
    CHECK(f.count("SELECT COUNT(*) FROM health_probe") == 0);
    const auto stats = f.committer().stats();
    CHECK(stats.replays == 0);
    CHECK(stats.units == 1);
    CHECK(stats.transactions == 0);
}

TEST_CASE("a batch run again after a unit failed keeps its savepoints' journal in memory", "[store]")
{
    Fixture f;
    // Enough rows for an update of them all to change ~50 pages: ~200 KiB of
    // statement journal inside one savepoint, past SQLite's 64 KiB in memory.
    f.committer().write([](sql::Statements& w) {
        w("INSERT INTO health_probe (id, at) WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
          "WHERE x < 20000) SELECT x, 0 FROM n")
            .exec();
    });
    const int before = unlinkedOpenFiles();
    WriterHold hold(f.committer());
    std::atomic<int> failingRuns{0}, updateRuns{0}, mostUnlinked{0};
    std::promise<std::exception_ptr> failed, updated;
    f.committer().submit(
        [&](sql::Statements&) {
            ++failingRuns;
            throw Conflict("this unit refuses");
        },
        [&](std::exception_ptr error) { failed.set_value(error); });
    f.committer().submit(
        [&](sql::Statements& w) {
            ++updateRuns;
            w("UPDATE health_probe SET at = at + 1").exec();
            mostUnlinked = std::max(mostUnlinked.load(), unlinkedOpenFiles());
        },
        [&](std::exception_ptr error) { updated.set_value(error); });
    hold.release();
    CHECK(failed.get_future().get() != nullptr);
    CHECK(updated.get_future().get() == nullptr);
    // Run unguarded, rolled back at the failure, then again in savepoints.
    CHECK(failingRuns == 2);
    CHECK(updateRuns == 1);
    CHECK(f.committer().stats().replays == 1);
    CHECK(mostUnlinked == before);
    CHECK(f.count("SELECT COUNT(*) FROM health_probe WHERE at = 1") == 20000);
}

TEST_CASE("submitted units share one transaction and are told after it committed, each once", "[store]")
{
    Fixture f;
    // The writer is held inside a unit while 60 more are submitted from
    // this one thread: without waiting for them, they all wait for the
    // next transaction (the fixture's batch limit is 64).
    WriterHold hold(f.committer());

    constexpr int kUnits = 60;
    std::mutex m;
    std::condition_variable told;
    std::vector<int> calls(kUnits, 0);
    std::vector<std::int64_t> rowsSeen(kUnits, -1);
    std::vector<std::string> errors(kUnits);
    int finished = 0;
    for (int i = 0; i < kUnits; ++i) {
        f.committer().submit(
            [i](sql::Statements& w) {
                w("INSERT INTO health_probe (id, at) VALUES (?, 0)").exec(i);
                if (i % 10 == 0) throw Conflict("unit " + std::to_string(i) + " refuses");
            },
            [&, i](std::exception_ptr error) {
                // Committed before it is told: another connection sees the rows.
                const std::int64_t rows = f.count("SELECT COUNT(*) FROM health_probe");
                std::lock_guard lock(m);
                ++calls[static_cast<std::size_t>(i)];
                rowsSeen[static_cast<std::size_t>(i)] = rows;
                try {
                    if (error) std::rethrow_exception(error);
                } catch (const Conflict& e) {
                    errors[static_cast<std::size_t>(i)] = e.what();
                }
                ++finished;
                told.notify_all();
            });
    }
    hold.release();
    {
        std::unique_lock lock(m);
        REQUIRE(told.wait_for(lock, 10s, [&] { return finished == kUnits; }));
    }
    for (int i = 0; i < kUnits; ++i) {
        INFO("unit " << i);
        CHECK(calls[static_cast<std::size_t>(i)] == 1);
        CHECK(rowsSeen[static_cast<std::size_t>(i)] == 54);  // all but the six that threw
        CHECK(errors[static_cast<std::size_t>(i)].empty() == (i % 10 != 0));
    }
    const auto stats = f.committer().stats();
    CHECK(stats.transactions == 2);  // the holder's, and one for all 60
    CHECK(stats.units == kUnits + 1);
    CHECK(stats.replays == 1);  // run again, each unit in a savepoint, after the first refused

    // A stopped Committer tells at once that nothing was stored.
    f.committer().stop();
    bool refused = false;
    f.committer().submit([](sql::Statements&) { FAIL("ran after stop"); },
                        [&](std::exception_ptr error) {
                            if (!error) return;
                            try {
                                std::rethrow_exception(error);
                            } catch (const StoreUnavailable&) {
                                refused = true;
                            }
                        });
    CHECK(refused);
}

TEST_CASE("an order and its message commit together", "[store]")
{
    Fixture f;
    const Order o = f.newOrder();
    CHECK(f.count("SELECT COUNT(*) FROM messages WHERE queue = 'orders' AND body LIKE '%" + o.id + "%'") == 1);
    auto read = f.api().getOrder(o.id);
    REQUIRE(read);
    CHECK(read->totalAmount == 2500);
    REQUIRE(read->events.size() == 1);
    CHECK(read->events[0].type == "status");
}

TEST_CASE("a completed step is never repeated, and only the current timer carries an order on", "[store]")
{
    Fixture f;
    const auto slow = test::slowPlan();
    const Order o = f.newOrder();
    const std::int64_t before = clock::nowMillis();
    const auto start = test::advance(f.work(), o.id, "", slow);
    CHECK(start.started);
    CHECK(start.begun == std::vector<std::string>{"validate"});
    CHECK(start.completed.empty());
    // The timer: an order-steps message due when the step's hour is up.
    CHECK(f.count("SELECT COUNT(*) FROM messages WHERE queue = 'order-steps' AND body LIKE '%\"validate\"%'") == 1);
    const std::int64_t due = f.count("SELECT step_due_at FROM orders WHERE id = '" + o.id + "'");
    CHECK(due >= before + 3'600'000);
    CHECK(f.count("SELECT due_at FROM messages WHERE queue = 'order-steps'") == due);

    // A second start (a redelivery) is not a second transition.
    CHECK(test::advance(f.work(), o.id, "", slow).stale);
    CHECK(f.count("SELECT COUNT(*) FROM order_events WHERE status = 'processing'") == 1);
    // The timer delivered early (a clock stepped back) completes nothing
    // and sets the timer again.
    const auto early = test::advance(f.work(), o.id, "validate", slow);
    CHECK_FALSE(early.stale);
    CHECK(early.completed.empty());
    CHECK(early.dueAt == due);
    CHECK(f.count("SELECT COUNT(*) FROM messages WHERE queue = 'order-steps'") == 2);

    f.dueNow(o.id);
    const auto first = test::advance(f.work(), o.id, "validate", slow);
    CHECK(first.completed == std::vector<std::string>{"validate"});
    CHECK(first.begun == std::vector<std::string>{"reserve_stock"});
    CHECK(first.lateMs >= 0);
    // The other copy of the validate timer is stale now.
    CHECK(test::advance(f.work(), o.id, "validate", slow).stale);
    f.dueNow(o.id);
    CHECK(test::advance(f.work(), o.id, "reserve_stock", slow).completed == std::vector<std::string>{"reserve_stock"});
    CHECK(test::advance(f.work(), o.id, "reserve_stock", slow).stale);
    CHECK(f.count("SELECT COUNT(*) FROM stock_reservations WHERE order_id = '" + o.id + "'") == 1);
    CHECK(f.count("SELECT COUNT(*) FROM order_events WHERE type = 'step_completed' AND order_id = '" + o.id + "'") ==
          2);
    CHECK(f.count("SELECT COUNT(*) FROM order_events WHERE type = 'step_started' AND order_id = '" + o.id + "'") ==
          3);
    f.dueNow(o.id);
    CHECK(test::advance(f.work(), o.id, "prepare_invoice", slow).finished);
    const auto after = test::advance(f.work(), o.id, "prepare_invoice", slow);
    CHECK(after.stale);
    CHECK(after.before == OrderStatus::AwaitingPayment);
    CHECK(f.count("SELECT COUNT(*) FROM invoices WHERE order_id = '" + o.id + "'") == 1);
}

TEST_CASE("orders.concurrency bounds the orders in processing, counted by their transitions", "[store]")
{
    Fixture f;
    const auto slow = test::slowPlan(2);
    const Order a = f.newOrder(), b = f.newOrder(), c = f.newOrder();
    CHECK(test::advance(f.work(), a.id, "", slow).started);
    CHECK(test::advance(f.work(), b.id, "", slow).started);
    CHECK(f.work().ordersInProcessing() == 2);
    const auto full = test::advance(f.work(), c.id, "", slow);
    CHECK(full.noCapacity);
    CHECK_FALSE(full.started);
    CHECK(f.api().getOrder(c.id)->status == OrderStatus::Queued);
    CHECK(f.count("SELECT COUNT(*) FROM order_events WHERE order_id = '" + c.id + "'") == 1);

    // An order that finishes frees its place; so does one that fails.
    f.dueNow(a.id);
    test::advance(f.work(), a.id, "validate", test::plan(std::chrono::milliseconds(0), 2));
    CHECK(f.api().getOrder(a.id)->status == OrderStatus::AwaitingPayment);
    CHECK(f.work().ordersInProcessing() == 1);
    CHECK(test::advance(f.work(), c.id, "", slow).started);
    CHECK(f.work().failOrder(b.id, "gave up"));
    CHECK(f.work().ordersInProcessing() == 1);
    CHECK(f.count("SELECT COUNT(*) FROM orders WHERE status = 'processing'") == 1);
    // Instant processing never keeps an order in processing: no place needed.
    const Order d = f.newOrder();
    CHECK(test::advance(f.work(), d.id, "", test::plan(std::chrono::milliseconds(0), 1)).finished);
}

TEST_CASE("idempotency keys replay, and refuse another request", "[store]")
{
    Fixture f;
    Order o;
    o.id = ids::newOrderId();
    o.customer = "c";
    o.currency = "EUR";
    o.items = {{"A", 1, 1}};
    o.totalAmount = 1;
    o.createdAt = o.updatedAt = clock::nowRfc3339();
    IdempotencyRecord idem{"k1", "hash-a", {202, "/orders/" + o.id, "{}"}, 60'000};
    CHECK_FALSE(test::createOrder(f.api(), o, idem).has_value());

    Order again = o;
    again.id = ids::newOrderId();
    auto replay = test::createOrder(f.api(), again, idem);
    REQUIRE(replay);
    CHECK(replay->location == "/orders/" + o.id);
    CHECK(f.count("SELECT COUNT(*) FROM orders") == 1);

    idem.requestHash = "hash-b";
    CHECK_THROWS_AS(test::createOrder(f.api(), again, idem), IdempotencyMismatch);
    CHECK(f.count("SELECT COUNT(*) FROM orders") == 1);
}

TEST_CASE("a payment is held while its order is processed, then queued", "[store]")
{
    Fixture f;
    const Order o = f.newOrder();
    test::advance(f.work(), o.id, "", test::slowPlan());
    const Payment p = f.payment(o.id, 2500);
    test::createPayment(f.api(), p);
    CHECK(f.count("SELECT COUNT(*) FROM messages WHERE queue = 'payments'") == 0);
    f.dueNow(o.id);
    REQUIRE(test::advance(f.work(), o.id, "validate", test::plan(std::chrono::milliseconds(0))).finished);
    CHECK(f.count("SELECT COUNT(*) FROM messages WHERE queue = 'payments'") == 1);

    REQUIRE(f.work().startPayment(p.id));
    auto outcome = f.work().settlePayment(p.id);
    CHECK(outcome.status == PaymentStatus::Succeeded);
    CHECK(f.api().getOrder(o.id)->status == OrderStatus::Paid);
    // Settling again (a redelivery) changes nothing.
    CHECK(f.work().settlePayment(p.id).alreadyFinal);
    CHECK(f.count("SELECT COUNT(*) FROM order_events WHERE status = 'paid'") == 1);
    // The order is final now: more payments are refused.
    CHECK_THROWS_AS(test::createPayment(f.api(), f.payment(o.id, 2500, "r2")), Conflict);
    CHECK_THROWS_AS(test::createPayment(f.api(), f.payment(ids::newOrderId(), 1)), NotFound);
}

TEST_CASE("cancel only from queued or awaiting_payment", "[store]")
{
    Fixture f;
    const Order queued = f.newOrder();
    CHECK(test::cancelOrder(f.api(), queued.id).status == OrderStatus::Cancelled);
    CHECK_THROWS_AS(test::cancelOrder(f.api(), queued.id), Conflict);
    const Order processing = f.newOrder();
    test::advance(f.work(), processing.id, "", test::slowPlan());
    CHECK_THROWS_AS(test::cancelOrder(f.api(), processing.id), Conflict);
    CHECK_THROWS_AS(test::cancelOrder(f.api(), ids::newOrderId()), NotFound);
}

namespace {

/// The details of SQLite's plan for `sql` with `params` bound, joined.
template <typename... T>
std::string queryPlan(Fixture& f, const std::string& sql, const T&... params)
{
    std::string all;
    // EXPLAIN QUERY PLAN rows are (id, parent, notused, detail).
    sql::Connection connection(f.settings.sqlitePath);
    sql::SqliteStatement plan(connection.handle(), "EXPLAIN QUERY PLAN " + sql);
    plan.query([&](sql::Statement& row) { all += row.text(3) + "; "; }, params...);
    return all;
}

}  // namespace

TEST_CASE("every list query reads an index in order, never sorts or scans by status", "[store][performance]")
{
    Fixture f;
    for (int i = 0; i < 50; ++i) f.newOrder();
    f.committer().write([](sql::Statements& w) { w("ANALYZE").exec(); });
    const std::string status = "queued", id = "ord_7ZZZZZZZZZZZZZZZZZZZZZZZZZ";
    const std::int64_t limit = 50;
    for (bool byStatus : {false, true}) {
        for (bool after : {false, true}) {
            const std::string sql = "SELECT id FROM orders " + sql::SqlApiStore::listFilter(byStatus, after);
            std::string all;
            if (byStatus && after) all = queryPlan(f, sql, status, id, limit);
            else if (byStatus) all = queryPlan(f, sql, status, limit);
            else if (after) all = queryPlan(f, sql, id, limit);
            else all = queryPlan(f, sql, limit);
            INFO("status filter " << byStatus << ", after " << after << ": " << all);
            CHECK(all.find("TEMP B-TREE") == std::string::npos);  // no sort
            if (byStatus) CHECK(all.find("orders_by_status") != std::string::npos);
            if (after) CHECK(all.find("SEARCH") != std::string::npos);
        }
    }
}

TEST_CASE("the counts by status behind /status and /metrics are kept by every change, not counted", "[store]")
{
    Fixture f;
    std::vector<Order> orders;
    for (int i = 0; i < 20; ++i) {
        orders.push_back(f.newOrder());
        if (i % 2 == 0) test::createPayment(f.api(), f.payment(orders.back().id, 2500));
    }
    test::cancelOrder(f.api(), orders[2].id);
    REQUIRE(f.work().failOrder(orders[3].id, "a test"));
    auto counted = [&](const std::string& table) {
        std::map<std::string, std::int64_t> n;
        f.db().localReader()("SELECT status, COUNT(*) FROM " + table + " GROUP BY status")
            .query([&](sql::Statement& row) { n[row.text(0)] = row.integer(1); });
        return n;
    };
    auto kept = [](std::map<std::string, std::int64_t> n) {
        std::erase_if(n, [](const auto& e) { return e.second == 0; });
        return n;
    };
    CHECK(kept(f.store->health().orderCounts()) == counted("orders"));
    CHECK(kept(f.store->health().paymentCounts()) == counted("payments"));
    CHECK(f.store->health().orderCounts().at("cancelled") == 1);
    CHECK(f.store->health().orderCounts().at("failed") == 1);
    CHECK(f.store->health().orderCounts().at("queued") == 18);
    // The held payment of the cancelled order was rejected with it.
    CHECK(f.store->health().paymentCounts().at("queued") == 9);
    CHECK(f.store->health().paymentCounts().at("rejected") == 1);
    // A few rows of their own, whatever the size of the tables.
    const std::string plan = [&] {
        std::string all;
        f.db().localReader()("EXPLAIN QUERY PLAN SELECT status, SUM(n) FROM status_counts WHERE kind = 'orders' GROUP BY status")
            .query([&](sql::Statement& row) { all += row.text(3) + "; "; });
        return all;
    }();
    INFO(plan);
    CHECK(plan.find("orders") == std::string::npos);

    // A database from before the counts (version 7) is counted once, as it
    // is migrated.
    f.committer().write([&](sql::Statements& w) {
        dropWebhookTables(w);
        dropStatusCounts(w);
        w("PRAGMA user_version = 7").exec();
    });
    f.close();
    f.open();
    CHECK(kept(f.store->health().orderCounts()) == counted("orders"));
    CHECK(kept(f.store->health().paymentCounts()) == counted("payments"));
}

TEST_CASE("instant processing runs each step once, in one transaction, and resumes after a crash", "[store]")
{
    Fixture f;
    const auto instant = test::plan(std::chrono::milliseconds(0));
    const Order o = f.newOrder();
    // A previous run (slow steps) got as far as the first step before the
    // crash; the daemon restarted with no processing time.
    REQUIRE(test::advance(f.work(), o.id, "", test::slowPlan()).started);
    f.dueNow(o.id);
    REQUIRE(test::advance(f.work(), o.id, "validate", test::slowPlan()).completed.size() == 1);
    f.dueNow(o.id);

    const auto first = test::advance(f.work(), o.id, "reserve_stock", instant);
    CHECK(first.before == OrderStatus::Processing);
    CHECK(first.completed == std::vector<std::string>{"reserve_stock", "prepare_invoice"});
    CHECK(first.finished);
    CHECK(f.api().getOrder(o.id)->status == OrderStatus::AwaitingPayment);

    // A redelivery of the same message changes nothing.
    const auto again = test::advance(f.work(), o.id, "reserve_stock", instant);
    CHECK(again.before == OrderStatus::AwaitingPayment);
    CHECK(again.stale);
    CHECK(again.completed.empty());
    CHECK_FALSE(again.finished);
    CHECK(f.count("SELECT COUNT(*) FROM order_events WHERE type = 'step_completed' AND order_id = '" + o.id + "'") ==
          3);
    CHECK(f.count("SELECT COUNT(*) FROM invoices WHERE order_id = '" + o.id + "'") == 1);
    CHECK(f.count("SELECT COUNT(*) FROM order_events WHERE status = 'awaiting_payment'") == 1);

    // A queued order goes all the way in one call, with no timer; a
    // cancelled one not at all.
    const Order fresh = f.newOrder();
    const auto whole = test::advance(f.work(), fresh.id, "", instant);
    CHECK(whole.finished);
    CHECK(whole.begun == std::vector<std::string>{"validate", "reserve_stock", "prepare_invoice"});
    CHECK(whole.completed == whole.begun);
    CHECK(f.count("SELECT COUNT(*) FROM messages WHERE queue = 'order-steps' AND body LIKE '%" + fresh.id + "%'") ==
          0);
    const Order cancelled = f.newOrder();
    test::cancelOrder(f.api(), cancelled.id);
    const auto none = test::advance(f.work(), cancelled.id, "", instant);
    CHECK(none.before == OrderStatus::Cancelled);
    CHECK(none.stale);
    CHECK(f.api().getOrder(cancelled.id)->status == OrderStatus::Cancelled);
    CHECK(f.work().ordersInProcessing() == 0);
}

TEST_CASE("a batch of messages shares one transaction, and a failing order fails alone", "[store]")
{
    Fixture f;
    std::vector<OrderWork> work;
    for (int i = 0; i < 5; ++i) work.push_back({f.newOrder().id, ""});
    work.insert(work.begin() + 2, OrderWork{ids::newOrderId(), ""});  // no such order
    const auto before = f.committer().stats().transactions;

    const auto outcomes = f.work().advance(work, test::plan(std::chrono::milliseconds(0)));

    CHECK(f.committer().stats().transactions == before + 1);
    REQUIRE(outcomes.size() == work.size());
    for (std::size_t i = 0; i < work.size(); ++i) {
        INFO("order " << i);
        if (i == 2) {
            REQUIRE(outcomes[i].error);
            CHECK_THROWS_AS(std::rethrow_exception(outcomes[i].error), PoisonMessage);
            continue;
        }
        CHECK_FALSE(outcomes[i].error);
        CHECK(outcomes[i].result.finished);
        CHECK(f.api().getOrder(work[i].orderId)->status == OrderStatus::AwaitingPayment);
    }
    CHECK(f.count("SELECT COUNT(*) FROM invoices") == 5);
    CHECK(f.count("SELECT COUNT(*) FROM order_events WHERE type = 'step_completed'") == 15);
}

TEST_CASE("a unit taken back in its batch takes back its changes to the counts by status", "[store]")
{
    Fixture f;
    auto insert = [](const std::string& id) {
        return [id](sql::Statements& w) {
            w("INSERT INTO orders (id, status, customer, currency, total_amount, items, metadata, created_at, updated_at) "
              "VALUES (?, 'queued', 'c', 'EUR', 1, '[]', '{}', 'now', 'now')")
                .exec(id);
            w.tally.add("orders", "queued");
        };
    };
    // The second unit notes a change and then fails: the batch runs again,
    // each unit in a savepoint, and only the others' changes are counted.
    const auto errors = f.committer().writeAll({insert(ids::newOrderId()),
                                                [](sql::Statements& w) {
                                                    w.tally.add("orders", "queued", 100);
                                                    throw Conflict("this unit fails");
                                                },
                                                insert(ids::newOrderId())});
    REQUIRE(errors.size() == 3);
    CHECK_FALSE(errors[0]);
    CHECK(errors[1]);
    CHECK_FALSE(errors[2]);
    CHECK(f.store->health().orderCounts().at("queued") == 2);
    CHECK(f.count("SELECT COUNT(*) FROM orders") == 2);
}

TEST_CASE("a status change queues one webhook delivery per endpoint subscribed to it, in its own transaction",
          "[store][webhooks]")
{
    Fixture f;
    std::atomic<int> woken{0};
    f.store->setMessageListener([&](const std::string& queue) {
        if (queue == "webhooks") ++woken;
    });
    const auto instant = test::plan(std::chrono::milliseconds(0));
    // On SQLite a delivery is announced in webhook_outbox, not as a message.
    auto deliveries = [&](const std::string& endpoint) {
        return f.count("SELECT COUNT(*) FROM webhook_outbox WHERE body LIKE '%" + endpoint + "%'");
    };
    // No endpoint: nothing queued, nothing told.
    const Order before = f.newOrder();
    REQUIRE(test::advance(f.work(), before.id, "", instant).finished);
    CHECK(f.count("SELECT COUNT(*) FROM webhook_outbox") == 0);
    CHECK(woken == 0);

    WebhookStore& webhooks = f.store->webhooks();
    auto endpoint = [&](const std::string& id, std::vector<std::string> events) {
        WebhookEndpoint e;
        e.id = id;
        e.url = "https://203.0.113.10/" + id;
        e.events = std::move(events);
        e.secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        e.createdAt = clock::nowRfc3339();
        webhooks.addEndpoint(e);
    };
    endpoint("we_all", {"order.processing", "order.awaiting_payment", "order.paid", "order.cancelled"});
    endpoint("we_paid", {"order.paid"});
    const Order o = f.newOrder();
    REQUIRE(test::advance(f.work(), o.id, "", instant).finished);
    // processing and awaiting_payment, to the endpoint that takes them.
    CHECK(deliveries("we_all") == 2);
    CHECK(deliveries("we_paid") == 0);
    CHECK(woken >= 1);
    // The event as it was: processing, though the order went on.
    std::int64_t seq = 0;
    f.db().localReader()("SELECT seq FROM order_events WHERE order_id = ? AND status = 'processing'")
        .query([&](sql::Statement& row) { seq = row.integer(0); }, o.id);
    const auto snapshot = webhooks.orderEvent(o.id, seq, "");
    REQUIRE(snapshot);
    CHECK(snapshot->order.status == OrderStatus::Processing);
    CHECK(snapshot->order.updatedAt == snapshot->at);
    CHECK_FALSE(webhooks.orderEvent(o.id, 999, "").has_value());

    // Removed: the next order's events go nowhere, at once.
    REQUIRE(webhooks.removeEndpoint("we_all"));
    const Order after = f.newOrder();
    REQUIRE(test::advance(f.work(), after.id, "", instant).finished);
    CHECK(deliveries("we_all") == 2);
    CHECK(f.count("SELECT COUNT(*) FROM webhook_outbox WHERE body LIKE '%" + after.id + "%'") == 0);
    CHECK(f.count("SELECT COUNT(*) FROM messages WHERE queue = 'webhooks'") == 0);
}

TEST_CASE("a delivery announced in webhook_outbox leaves it when delivered or dropped, and becomes a message "
          "when it has to wait or is given up on",
          "[store][webhooks]")
{
    Fixture f;
    f.committer().write([](sql::Statements& w) {
        for (int i = 1; i <= 6; ++i)
            w("INSERT INTO webhook_outbox (body, created_at) VALUES (?, ?)")
                .send(R"({"endpoint_id":"we_1","n":)" + std::to_string(i) + "}", std::int64_t{1000} * i);
    });
    WebhookStore& webhooks = f.store->webhooks();
    const auto announced = webhooks.announced(0, 10);
    REQUIRE(announced.size() == 6);
    for (std::size_t i = 0; i < announced.size(); ++i) {
        INFO(i);
        CHECK(announced[i].id < 0);  // never a message's id
        CHECK(announced[i].queue == "webhooks");
        CHECK(announced[i].attempt == 1);
        CHECK(announced[i].createdAt == 1000 * static_cast<std::int64_t>(i + 1));
        if (i > 0) CHECK(announced[i].id < announced[i - 1].id);  // oldest first
    }
    CHECK(webhooks.announced(0, 2).size() == 2);
    // After a row: those after it (the dispatcher reads on from where it was).
    const auto later = webhooks.announced(-announced[1].id, 10);
    REQUIRE(later.size() == 4);
    CHECK(later.front().id == announced[2].id);
    // Counted as ready in the queue's depth, the oldest's age with it.
    const QueueDepth depth = f.store->queue().depths().at("webhooks");
    CHECK(depth.ready == 6);
    CHECK(depth.oldestAgeMs > clock::nowMillis() - 1001 - 60'000);

    using Kind = WebhookSettlement::Kind;
    auto settlement = [](Kind kind, std::chrono::milliseconds delay = {}) {
        WebhookSettlement s;
        s.kind = kind;
        s.delay = delay;
        s.reason = "answered 500";
        return s;
    };
    std::vector<std::pair<StoredMessage, WebhookAttempt>> attempts;
    for (const auto& m : announced) {
        WebhookAttempt a;
        a.endpointId = "we_1";
        a.eventId = "evt_" + std::to_string(-m.id);
        a.eventType = "order.paid";
        a.attempt = 1;
        a.at = clock::nowRfc3339();
        attempts.emplace_back(m, a);
    }
    const std::vector<WebhookSettlement> settlements{
        settlement(Kind::Delivered),  settlement(Kind::Drop),
        settlement(Kind::Retry, 5s),  settlement(Kind::Postpone, 1s),
        settlement(Kind::GiveUp),     settlement(Kind::Postpone)};  // the last handed back as it was
    std::promise<void> committed;
    webhooks.settle(attempts, settlements, [&] { committed.set_value(); });
    REQUIRE(committed.get_future().wait_for(10s) == std::future_status::ready);

    // Delivered, dropped and moved out are gone from the outbox; the one
    // handed back stays, first in line.
    const auto left = webhooks.announced(0, 10);
    REQUIRE(left.size() == 1);
    CHECK(left[0].id == announced[5].id);
    auto message = [&](int n, const std::string& column) {
        return f.text("SELECT " + column + " FROM messages WHERE queue = 'webhooks' AND body LIKE '%\"n\":" +
                      std::to_string(n) + "}%'");
    };
    CHECK(f.count("SELECT COUNT(*) FROM messages WHERE queue = 'webhooks'") == 3);
    // The retry: ready in about 5 s, its attempt counted, its error kept.
    CHECK(message(3, "state") == "ready");
    CHECK(message(3, "attempts") == "1");
    CHECK(message(3, "last_error") == "answered 500");
    CHECK(message(3, "created_at") == "3000");  // max_age counts from the announcement
    CHECK(std::stoll(message(3, "due_at")) >= clock::nowMillis() + 3000);
    // Put off: ready in about a second, the attempt not counted.
    CHECK(message(4, "state") == "ready");
    CHECK(message(4, "attempts") == "0");
    // Given up on: a dead letter of the webhooks queue.
    CHECK(message(5, "state") == "dead");
    CHECK(message(5, "last_error") == "answered 500");
    const auto dead = f.store->admin().deadLetters("webhooks", 10, 0);
    REQUIRE(dead.size() == 1);
    // Attempts logged for the three that were tried (a drop or a delivery
    // put off was not).
    CHECK(f.count("SELECT COUNT(*) FROM webhook_attempts") == 3);
}
