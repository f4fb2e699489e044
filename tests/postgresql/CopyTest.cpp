// The copy of a SQLite database into an empty PostgreSQL one
// (orderpayd --copy-to-postgresql), with orders in every state.
#include "domain/Clock.h"
#include "domain/Ids.h"
#include "store/copy/SqliteToPostgresql.h"
#include "store/postgresql/PgConnection.h"

#include "PostgresqlNode.h"
#include "TestStore.h"

#include <catch2/catch.hpp>

#include <cstdio>
#include <sstream>

using namespace orderpay;
using namespace std::chrono_literals;

namespace {

/// A SQLite database with orders in every state, their payments, events,
/// reservations, invoices, queued, leased and dead messages, delivery
/// counts and idempotency keys.
struct SourceDatabase : test::TestStore {
    static constexpr int kPerState = 300;

    SourceDatabase()
    {
        auto order = [&](int n, std::optional<IdempotencyRecord> key = std::nullopt) {
            Order o;
            o.id = ids::newOrderId();
            o.customer = "c" + std::to_string(n) + "@example.com";
            o.currency = "EUR";
            o.items = {{"A-" + std::to_string(n % 7), 2, 1250}, {"B", 1, 99}};
            o.totalAmount = 2599;
            o.metadata = {{"channel", n % 2 ? "web" : "shop"}, {"note", "ünïcødé " + std::to_string(n)}};
            o.createdAt = o.updatedAt = clock::nowRfc3339();
            test::createOrder(store->api(), o, std::move(key));
            return o.id;
        };
        auto payment = [&](const std::string& orderId, std::int64_t amount, const std::string& reference) {
            Payment p;
            p.id = ids::newPaymentId();
            p.orderId = orderId;
            p.amount = amount;
            p.currency = "EUR";
            p.method = "card";
            p.reference = reference;
            p.createdAt = p.updatedAt = clock::nowRfc3339();
            test::createPayment(store->api(), p);
            return p.id;
        };
        const auto instant = test::plan(std::chrono::milliseconds(0));
        for (int i = 0; i < kPerState; ++i) {
            order(i, IdempotencyRecord{"key-" + std::to_string(i), "hash", {202, "/orders/x", "{}"}, 60'000});  // queued
            test::advance(store->work(), order(i), "", test::slowPlan());                                      // processing
            const std::string awaiting = order(i);
            test::advance(store->work(), awaiting, "", instant);
            const std::string paid = order(i);
            test::advance(store->work(), paid, "", instant);
            const std::string pid = payment(paid, 2599, "psp-" + std::to_string(i));
            store->work().startPayment(pid);
            store->work().settlePayment(pid);
            const std::string rejected = order(i);
            test::advance(store->work(), rejected, "", instant);
            const std::string rid = payment(rejected, 1, "short-" + std::to_string(i));
            store->work().startPayment(rid);
            store->work().settlePayment(rid);
            const std::string failed = order(i);
            store->work().failOrder(failed, "gave up after 5 deliveries");
            test::cancelOrder(store->api(), order(i));
        }
        committer().write([](sql::Statements& w) {
            // Some messages dead, some leased (the daemon stopped mid-work),
            // a delivery count of a RabbitMQ message.
            w("UPDATE messages SET state = 'dead', last_error = 'poison' WHERE id % 7 = 0").exec();
            w("UPDATE messages SET state = 'leased', attempts = 2, lease = 3 WHERE id % 7 = 1").exec();
            w("INSERT INTO deliveries (message_id, attempts, last_at) VALUES (42, 3, 1000)").exec();
            w("INSERT INTO webhook_endpoints (id, url, events, secret, previous_secret, previous_until, enabled, "
              "disabled_reason, created_at) VALUES ('we_1', 'https://203.0.113.10/h', 'order.paid,order.failed', "
              "'whsec_a', 'whsec_b', 99, 0, 'gone', '2026-12-07T00:00:00.000Z')")
                .exec();
            w("INSERT INTO webhook_attempts (endpoint_id, event_id, event_type, attempt, at, at_ms, status_code, error, "
              "duration_ms) VALUES ('we_1', 'evt_1', 'order.paid', 2, '2026-12-07T00:00:00.000Z', 5, NULL, 'x', 12)")
                .exec();
            w("DELETE FROM messages WHERE id = (SELECT MAX(id) FROM messages)").exec();  // ids are not reused
            // Two deliveries announced and not yet tried (SQLite keeps them
            // apart from the messages until they have to wait).
            w("INSERT INTO webhook_outbox (body, created_at) VALUES ('{\"endpoint_id\":\"we_1\",\"n\":1}', 7001)").exec();
            w("INSERT INTO webhook_outbox (body, created_at) VALUES ('{\"endpoint_id\":\"we_1\",\"n\":2}', 7002)").exec();
        });
    }
};

}  // namespace

TEST_CASE("a SQLite database with orders in every state is copied into PostgreSQL whole, and checked",
          "[postgresql][copy]")
{
    SourceDatabase source;
    const std::int64_t orders = source.count("SELECT COUNT(*) FROM orders");
    const std::int64_t events = source.count("SELECT COUNT(*) FROM order_events");
    const std::int64_t messages = source.count("SELECT COUNT(*) FROM messages");
    const std::int64_t lastMessageId = source.count("SELECT seq FROM sqlite_sequence WHERE name = 'messages'");
    REQUIRE(orders == 7 * SourceDatabase::kPerState);
    source.close();

    test::TestDatabase target;
    StoreSettings settings = source.settings;
    settings.postgresqlUri = target.uri();
    std::ostringstream progress;
    const auto copied = copySqliteToPostgresql(settings, progress);
    INFO(progress.str());

    pg::Connection c(target.uri(), 5s);
    auto count = [&](const std::string& sql) { return c.exec(sql).integer(0, 0); };
    CHECK(count("SELECT COUNT(*) FROM orders") == orders);
    CHECK(count("SELECT COUNT(*) FROM order_events") == events);
    CHECK(count("SELECT COUNT(*) FROM messages") == messages + 2);
    for (const char* status : {"queued", "processing", "awaiting_payment", "paid", "failed", "cancelled"}) {
        INFO(status);
        CHECK(c.exec("SELECT COUNT(*) FROM orders WHERE status = $1", {std::string(status)}).integer(0, 0) >=
              SourceDatabase::kPerState);
    }
    CHECK(count("SELECT COUNT(*) FROM payments WHERE status = 'succeeded'") == SourceDatabase::kPerState);
    CHECK(count("SELECT COUNT(*) FROM payments WHERE status = 'rejected'") == SourceDatabase::kPerState);
    CHECK(count("SELECT COUNT(*) FROM messages WHERE state = 'dead'") > 0);
    CHECK(count("SELECT COUNT(*) FROM messages WHERE state = 'leased'") > 0);
    CHECK(count("SELECT COUNT(*) FROM idempotency_keys") == SourceDatabase::kPerState);
    CHECK(count("SELECT attempts FROM deliveries WHERE message_id = 42") == 3);
    CHECK(count("SELECT value FROM work_counters WHERE name = 'processing'") == SourceDatabase::kPerState);
    CHECK(c.exec("SELECT metadata FROM orders WHERE metadata LIKE '%ünïcødé 7\"%' LIMIT 1").rows() == 1);
    // The announced deliveries are ready messages of the webhooks queue, in
    // their order, after the highest id SQLite gave out (deleted ones too).
    CHECK(count("SELECT COUNT(*) FROM messages WHERE queue = 'webhooks'") == 2);
    const auto outbox = c.exec("SELECT id, body, state, attempts, due_at, created_at FROM messages "
                               "WHERE queue = 'webhooks' ORDER BY id");
    REQUIRE(outbox.rows() == 2);
    CHECK(outbox.integer(0, 0) == lastMessageId + 1);
    CHECK(outbox.text(0, 1) == R"({"endpoint_id":"we_1","n":1})");
    CHECK(outbox.text(1, 1) == R"({"endpoint_id":"we_1","n":2})");
    CHECK(outbox.text(1, 2) == "ready");
    CHECK(outbox.integer(1, 3) == 0);
    CHECK(outbox.integer(1, 4) == 7002);
    CHECK(outbox.integer(1, 5) == 7002);
    CHECK(count("SELECT nextval(pg_get_serial_sequence('messages', 'id'))") == lastMessageId + 3);
    CHECK(count("SELECT previous_until FROM webhook_endpoints WHERE id = 'we_1' AND enabled = 0") == 99);
    CHECK(count("SELECT duration_ms FROM webhook_attempts WHERE event_id = 'evt_1' AND status_code IS NULL") == 12);
    // Every table reported, with a digest of its rows.
    REQUIRE(copied.size() == 12);
    for (const auto& t : copied) CHECK(t.digest.size() == 64);

    // A second copy into the same database is refused: it is not empty.
    std::ostringstream again;
    CHECK_THROWS_AS(copySqliteToPostgresql(settings, again), PermanentError);
    CHECK(count("SELECT COUNT(*) FROM orders") == orders);
}

TEST_CASE("orderpayd --copy-to-postgresql copies, reports each table and exits 0, and a failed copy exits 1",
          "[postgresql][copy]")
{
    test::TempDir dir;
    const std::string db = dir.file("orderpay.db");
    {
        StoreSettings s;
        s.sqlitePath = db;
        sqlite::SqliteStore store(s);
        Order o;
        o.id = ids::newOrderId();
        o.customer = "c";
        o.currency = "EUR";
        o.items = {{"A", 1, 100}};
        o.totalAmount = 100;
        o.createdAt = o.updatedAt = clock::nowRfc3339();
        test::createOrder(store.api(), o);
    }
    test::TestDatabase target;
    auto run = [&](const std::string& uri) {
        const std::string cmd = std::string(ORDERPAYD_PATH) + " --config=" + ORDERPAY_CONFIG_PATH +
                                " -D store.sqlite.path=" + db + " -D 'store.postgresql.uri=" + uri +
                                "' --copy-to-postgresql 2>&1";
        std::string output;
        FILE* p = ::popen(cmd.c_str(), "r");
        REQUIRE(p != nullptr);
        char buffer[4096];
        for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, p)) > 0;) output.append(buffer, n);
        const int status = ::pclose(p);
        return std::make_pair(WIFEXITED(status) ? WEXITSTATUS(status) : -1, output);
    };
    const auto [code, output] = run(target.uri());
    INFO(output);
    CHECK(code == 0);
    CHECK(output.find("orders 1 ") != std::string::npos);
    CHECK(output.find("done") != std::string::npos);
    CHECK(output.find(test::suitePostgresql().password) == std::string::npos);  // never the password

    const auto [again, refused] = run(target.uri());
    INFO(refused);
    CHECK(again == 1);
    CHECK(refused.find("not empty") != std::string::npos);
    CHECK(refused.find(test::suitePostgresql().password) == std::string::npos);
}
