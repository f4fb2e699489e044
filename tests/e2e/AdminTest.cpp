// The operator routes: /status and its event stream, the dead letters and
// their replay, the admin token, the status page's document. Real dead
// letters, made by the daemon's own rules: deliveries cut short by SIGKILL
// past retry.max_attempts.
#include "Daemon.h"
#include "HttpClient.h"
#include "WebhookReceiver.h"

#include <catch2/catch.hpp>

#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>

#include <sqlite3.h>

#include <chrono>
#include <csignal>
#include <set>

using namespace e2e;

namespace {

/// Runs a statement that changes rows on the daemon's database (SQLite
/// file or its PostgreSQL database); returns how many it changed.
int changeRows(const Daemon& d, const std::string& sql)
{
    if (!d.postgresqlUri().empty()) {
        return static_cast<int>(postgresqlQuery(d.postgresqlUri(), sql + " RETURNING 1").size());
    }
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(d.dbPath().c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    const int changed = sqlite3_changes(db);
    sqlite3_close(db);
    REQUIRE(rc == SQLITE_OK);
    return changed;
}

/// With the daemon killed: leaves what two deliveries of `queue`'s message
/// naming `id`, each cut short by SIGKILL, leave behind (the embedded
/// queue: the message leased, its attempts counted; RabbitMQ: its delivery
/// count, by the message's outbox id). The next start, with
/// retry.max_attempts = 1, gives it up: a dead letter of the daemon's own.
void cutShortTwice(const Daemon& d, const std::string& queue, const std::string& id)
{
    const std::string message = "queue = '" + queue + "' AND body LIKE '%" + id + "%'";
    const std::string sql =
        usingRabbitMq() ? "INSERT INTO deliveries (message_id, attempts, last_at) SELECT id, 2, 0 FROM messages WHERE " + message
                        : "UPDATE messages SET state = 'leased', attempts = 2, lease = 2 WHERE " + message;
    REQUIRE(changeRows(d, sql) == 1);
}

/// Waits until every order of `ids` has begun its first step (its timer
/// is set: an order-steps message waits for it).
void waitStepStarted(const HttpClient& c, const std::vector<std::string>& ids)
{
    for (const auto& id : ids) {
        INFO("order " << id);
        REQUIRE(eventually(
            [&] {
                auto r = c.getOrder(id);
                return r.status == 200 && countEvents(events(r.obj()), "step_started") == 1;
            },
            20s));
    }
}

std::vector<Poco::JSON::Object::Ptr> deadLetters(const HttpClient& c, const std::string& query = "limit=200");

/// Waits until `n` dead letters are listed: an order or payment is failed
/// in the transaction before its message is kept as a dead letter (a crash
/// in between delivers the message again, and it dies again).
void waitDeadLetters(const HttpClient& c, std::size_t n, const std::string& query = "limit=200")
{
    std::size_t listed = 0;
    const bool there = eventually([&] { return (listed = deadLetters(c, query).size()) == n; }, 10s, 20ms);
    INFO(listed << " dead letters listed (" << query << ")");
    REQUIRE(there);
}

/// Orders whose processing was cut short twice, then given up on by the
/// restarted daemon (retry.max_attempts = 1): each failed, a dead letter.
std::vector<std::string> makeDeadOrders(Daemon& d, const HttpClient& c, int n)
{
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) ids.push_back(c.createOrder(orderJson("dead" + std::to_string(i) + "@example.com")));
    waitStepStarted(c, ids);
    d.kill();
    for (const auto& id : ids) cutShortTwice(d, "order-steps", id);
    d.restart({"retry.max_attempts=1"});
    for (const auto& id : ids) c.waitForOrderStatus(id, "failed", 30s);
    waitDeadLetters(c, ids.size());
    return ids;
}

Poco::JSON::Object::Ptr status(const HttpClient& c)
{
    auto r = c.get("/status");
    REQUIRE(r.status == 200);
    return r.obj();
}

std::int64_t count(const Poco::JSON::Object::Ptr& doc, const std::string& kind, const std::string& status)
{
    return getInt(getObject(doc, kind), status).value_or(-1);
}

/// The dead letters the daemon lists (every page, newest first).
std::vector<Poco::JSON::Object::Ptr> deadLetters(const HttpClient& c, const std::string& query)
{
    std::vector<Poco::JSON::Object::Ptr> all;
    std::string path = "/dead-letters?" + query;
    for (int pages = 0; pages < 100; ++pages) {
        auto r = c.get(path);
        REQUIRE(r.status == 200);
        auto list = getArray(r.obj(), "dead_letters");
        REQUIRE(list);
        for (std::size_t i = 0; i < list->size(); ++i) all.push_back(arrayObject(list, i));
        if (isNull(r.obj(), "next")) return all;
        path = getString(r.obj(), "next").value_or("");
    }
    FAIL("the dead letters' pages never ended");
    return all;
}

/// Reads an event stream on a connection of its own.
class EventStream {
public:
    EventStream(unsigned short port, const std::string& path, const std::string& token = {})
        : socket_(Poco::Net::SocketAddress("127.0.0.1", port))
    {
        std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n";
        if (!token.empty()) request += "Authorization: Bearer " + token + "\r\n";
        request += "\r\n";
        socket_.sendBytes(request.data(), static_cast<int>(request.size()));
        socket_.setReceiveTimeout(Poco::Timespan(0, 100'000));
    }

    /// The head, once it is there (empty if not within `timeout`).
    std::string head(std::chrono::milliseconds timeout = 5s)
    {
        eventually([&] { return readSome() && received_.find("\r\n\r\n") != std::string::npos; }, timeout, 1ms);
        const auto end = received_.find("\r\n\r\n");
        if (end == std::string::npos) return {};
        std::string h = received_.substr(0, end);
        received_.erase(0, end + 4);
        return h;
    }

    /// The data of the next whole event (empty if none within `timeout`).
    std::string next(std::chrono::milliseconds timeout = 5s)
    {
        eventually([&] { return readSome() && received_.find("\n\n") != std::string::npos; }, timeout, 1ms);
        const auto end = received_.find("\n\n");
        if (end == std::string::npos) return {};
        const std::string event = received_.substr(0, end);
        received_.erase(0, end + 2);
        REQUIRE(event.rfind("event: status\ndata: ", 0) == 0);
        return event.substr(std::string("event: status\ndata: ").size());
    }

private:
    /// True when something is buffered (read now or before).
    bool readSome()
    {
        char buffer[65536];
        try {
            const int n = socket_.receiveBytes(buffer, sizeof buffer);
            if (n > 0) received_.append(buffer, static_cast<std::size_t>(n));
        } catch (const Poco::TimeoutException&) {
        }
        return !received_.empty();
    }

    Poco::Net::StreamSocket socket_;
    std::string received_;
};

}  // namespace

TEST_CASE("GET /status counts orders and payments by status as the writers commit them", "[admin]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    auto before = status(c);
    CHECK(getString(before, "instance").value_or("").find(std::to_string(d.port())) != std::string::npos);
    CHECK(!getString(before, "version").value_or("").empty());
    CHECK(getInt(before, "uptime_s").value_or(-1) >= 0);
    CHECK(getString(getObject(before, "health"), "status") == "ok");
    for (const char* q : {"orders", "order-steps", "payments"}) {
        INFO("queue " << q);
        auto queue = getObject(getObject(before, "queues"), q);
        REQUIRE(queue);
        for (const char* field : {"ready", "in_flight", "delayed", "dead"}) CHECK(getInt(queue, field).value_or(-1) >= 0);
        CHECK(queue->has("oldest_ready_age_s"));
    }
    for (const char* s : {"queued", "processing", "awaiting_payment", "paid", "failed", "cancelled"})
        CHECK(count(before, "orders", s) == 0);

    std::vector<std::string> ids;
    for (int i = 0; i < 6; ++i) ids.push_back(c.createOrder(orderJson("count" + std::to_string(i) + "@example.com")));
    for (const auto& id : ids) c.waitForOrderStatus(id, "awaiting_payment");
    // Two paid, one cancelled, one with a payment that does not match.
    for (int i = 0; i < 2; ++i) {
        c.waitForPaymentStatus(c.createPayment(paymentJson(ids[static_cast<std::size_t>(i)], 2500, "EUR", "card",
                                                           "ref-" + std::to_string(i))),
                               "succeeded");
    }
    REQUIRE(c.cancelOrder(ids[2]).status == 200);
    c.waitForPaymentStatus(c.createPayment(paymentJson(ids[3], 1, "EUR", "card", "ref-short")), "rejected");

    // The counters agree with the orders themselves, as listed.
    auto listed = [&](const std::string& s) {
        return static_cast<std::int64_t>(c.listAllOrderIds("limit=200&status=" + s).size());
    };
    auto now = status(c);
    INFO(stringify(now));
    CHECK(count(now, "orders", "awaiting_payment") == 3);
    CHECK(count(now, "orders", "paid") == 2);
    CHECK(count(now, "orders", "cancelled") == 1);
    CHECK(count(now, "orders", "queued") == 0);
    for (const char* s : {"queued", "processing", "awaiting_payment", "paid", "failed", "cancelled"})
        CHECK(count(now, "orders", s) == listed(s));
    CHECK(count(now, "payments", "succeeded") == 2);
    CHECK(count(now, "payments", "rejected") == 1);
    // Over the last minute, per second: six accepted, six processed.
    CHECK(eventually(
        [&] {
            auto rates = getObject(status(c), "rates");
            return rates && rates->getValue<double>("accepted_per_s") > 0 && rates->getValue<double>("processed_per_s") > 0;
        },
        5s, 100ms));

    // The counts are the database's: a restart finds them as they were.
    d.restart();
    auto after = status(c);
    CHECK(count(after, "orders", "awaiting_payment") == 3);
    CHECK(count(after, "orders", "paid") == 2);
}

TEST_CASE("GET /status/stream sends the status document at once and then every second", "[admin]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    EventStream stream(d.port(), "/status/stream");
    const std::string head = stream.head();
    INFO("head: " << head);
    REQUIRE(head.rfind("HTTP/1.1 200", 0) == 0);
    CHECK(head.find("Content-Type: text/event-stream") != std::string::npos);

    auto first = parseJson(stream.next()).extract<Poco::JSON::Object::Ptr>();
    CHECK(getString(first, "instance").value_or("").find(std::to_string(d.port())) != std::string::npos);
    CHECK(count(first, "orders", "awaiting_payment") == 0);

    const auto id = c.createOrder(orderJson("stream@example.com"));
    c.waitForOrderStatus(id, "awaiting_payment");
    // A later event shows it; events keep coming, about a second apart.
    const auto start = std::chrono::steady_clock::now();
    int events = 0;
    bool seen = false;
    while (!seen && std::chrono::steady_clock::now() - start < 10s) {
        const std::string data = stream.next(3s);
        REQUIRE(!data.empty());
        ++events;
        seen = count(parseJson(data).extract<Poco::JSON::Object::Ptr>(), "orders", "awaiting_payment") == 1;
    }
    CHECK(seen);
    // The stream holds no thread: other requests are answered meanwhile,
    // and a client that goes takes its stream with it.
    CHECK(c.get("/health/live").status == 200);
    const auto a = stream.next(3s), b = stream.next(3s);
    CHECK(!a.empty());
    CHECK(!b.empty());
}

TEST_CASE("The operator routes need an admin token when http.auth.admin_token_file is set, and a client token gets 403",
          "[admin][auth]")
{
    TempDir dir;
    const auto clientFile = dir.write("tokens", "client-token-1\n");
    const auto adminFile = dir.write("admin-tokens", "# operators\nadmin-token-1\n");
    Daemon d({"http.auth.token_file=" + clientFile, "http.auth.admin_token_file=" + adminFile,
              "orders.processing_ms=0"});
    HttpClient none(d.port()), client(d.port(), "client-token-1"), admin(d.port(), "admin-token-1"),
        wrong(d.port(), "not-a-token");

    for (const std::string& path : std::vector<std::string>{"/status", "/dead-letters", "/dead-letters/dl_1", "/status/stream"}) {
        INFO(path);
        if (path == "/status/stream") {
            EventStream anonymous(d.port(), path), asClient(d.port(), path, "client-token-1"),
                asAdmin(d.port(), path, "admin-token-1");
            CHECK(anonymous.head().rfind("HTTP/1.1 401", 0) == 0);
            CHECK(asClient.head().rfind("HTTP/1.1 403", 0) == 0);
            CHECK(asAdmin.head().rfind("HTTP/1.1 200", 0) == 0);
            continue;
        }
        requireProblem(none.get(path), 401, "/problems/unauthorized");
        requireProblem(wrong.get(path), 401, "/problems/unauthorized");
        requireProblem(client.get(path), 403, "/problems/forbidden");
    }
    CHECK(admin.get("/status").status == 200);
    CHECK(admin.get("/dead-letters").status == 200);
    requireProblem(admin.get("/dead-letters/dl_1"), 404, "/problems/not-found");
    requireProblem(client.post("/dead-letters/replay", R"({"dry_run": true})"), 403, "/problems/forbidden");
    CHECK(admin.post("/dead-letters/replay", R"({"dry_run": true})").status == 200);

    // An admin token opens the client routes too; a client token still does.
    const auto id = admin.createOrder(orderJson("admin@example.com"));
    CHECK(client.getOrder(id).status == 200);
    requireProblem(none.getOrder(id), 401, "/problems/unauthorized");

    // Open to all: health, metrics, and the page (which holds no data).
    CHECK(none.get("/health/live").status == 200);
    CHECK(none.get("/metrics").status == 200);
    auto page = none.get("/");
    CHECK(page.status == 200);
    CHECK(page.contentType().rfind("text/html", 0) == 0);
}

TEST_CASE("Without an admin token file the operator routes take the client tokens", "[admin][auth]")
{
    TempDir dir;
    const auto clientFile = dir.write("tokens", "client-token-1\n");
    Daemon d({"http.auth.token_file=" + clientFile});
    CHECK(HttpClient(d.port(), "client-token-1").get("/status").status == 200);
    requireProblem(HttpClient(d.port()).get("/status"), 401, "/problems/unauthorized");
}

TEST_CASE("An order given up on is announced as order.failed, and a webhook given up on is a dead letter that replays",
          "[admin][deadletter][webhooks]")
{
    WebhookReceiver receiver;
    Daemon d({"orders.processing_ms=3000", "retry.backoff_ms=100", "webhooks.allow_private_networks=true"});
    HttpClient c(d.port());
    const auto created = c.post("/webhook-endpoints",
                                "{\"url\":" + quote(receiver.url("/failed")) + ",\"events\":[\"order.failed\"]}");
    REQUIRE(created.status == 201);
    const std::string endpoint = getString(created.obj(), "id").value_or("");
    receiver.configure("/failed", "ok", {getString(created.obj(), "secret").value_or("")});

    const auto id = makeDeadOrders(d, c, 1).front();
    REQUIRE(eventually([&] { return !receiver.log("/failed").empty(); }, 10s, 50ms));
    const auto announced = receiver.log("/failed").front();
    CHECK(announced.verified == std::vector<bool>{true});
    CHECK(getString(announced.json(), "type") == "order.failed");
    CHECK(getString(getObject(announced.json(), "data"), "id") == id);
    CHECK(getString(getObject(announced.json(), "data"), "status") == "failed");

    // A receiver failing past webhooks.max_age: its delivery is given up on
    // after the first attempt (the next would be 5 s on), kept as a dead
    // letter of the webhooks queue, and delivered when replayed.
    d.restart({"webhooks.max_age=2s"});
    receiver.configure("/failed", "fail", {getString(created.obj(), "secret").value_or("")}, -1);
    REQUIRE(c.post("/webhook-endpoints/" + endpoint + "/test", "").status == 202);
    REQUIRE(eventually([&] { return deadLetters(c, "queue=webhooks").size() == 1; }, 15s, 100ms));
    const auto letter = deadLetters(c, "queue=webhooks").front();
    INFO(stringify(letter));
    CHECK(getString(letter, "reason").value_or("").find("gave up after 1 attempt") != std::string::npos);
    CHECK(getString(letter, "reason").value_or("").find("answered 500") != std::string::npos);
    receiver.configure("/failed", "ok", {getString(created.obj(), "secret").value_or("")});
    REQUIRE(c.post("/dead-letters/" + getString(letter, "id").value_or("") + "/replay", "").status == 202);
    REQUIRE(eventually(
        [&] {
            const auto log = receiver.log("/failed");
            return !log.empty() && log.back().answered == 204;
        },
        10s, 50ms));
    CHECK(getString(receiver.log("/failed").back().json(), "type") == "webhook.test");
    CHECK(deadLetters(c, "queue=webhooks").empty());
}

TEST_CASE("GET /openapi.json serves the OpenAPI description compiled in, byte for byte the source file", "[admin]")
{
    Daemon d;
    const auto r = HttpClient(d.port()).get("/openapi.json");
    REQUIRE(r.status == 200);
    CHECK(r.contentType().find("application/json") == 0);
    CHECK(r.body == readFile(sourceDir() + "/daemon/http/openapi.json"));
    CHECK(getString(r.obj(), "openapi") == "3.1.0");
    requireProblem(HttpClient(d.port()).post("/openapi.json", "{}"), 405);
}

TEST_CASE("GET / serves the status page with a Content-Security-Policy that allows only its own code",
          "[admin][page]")
{
    Daemon d;
    auto page = HttpClient(d.port()).get("/");
    REQUIRE(page.status == 200);
    CHECK(page.body.find("<script>") != std::string::npos);
    const std::string csp = page.header("Content-Security-Policy");
    INFO("CSP: " << csp);
    CHECK(csp.find("default-src 'none'") != std::string::npos);
    CHECK(csp.find("script-src 'sha256-") != std::string::npos);
    CHECK(csp.find("connect-src 'self'") != std::string::npos);
    CHECK(csp.find("unsafe-inline") == std::string::npos);
    CHECK(csp.find("http") == std::string::npos);  // no other origin
    // No asset from elsewhere: nothing in the document names another origin.
    CHECK(page.body.find("src=\"http") == std::string::npos);
    CHECK(page.body.find("href=\"http") == std::string::npos);
    requireProblem(HttpClient(d.port()).post("/", "{}"), 405, "/problems/method-not-allowed");
}

TEST_CASE("A dead letter made by the daemon's own rules is listed, and its replay processes the order",
          "[admin][deadletter]")
{
    Daemon d({"orders.processing_ms=3000", "retry.backoff_ms=100"});
    HttpClient c(d.port());
    const auto id = makeDeadOrders(d, c, 1).front();

    auto list = deadLetters(c);
    REQUIRE(list.size() == 1);
    auto letter = list.front();
    INFO(stringify(letter));
    const std::string dl = getString(letter, "id").value_or("");
    CHECK(dl.rfind("dl_", 0) == 0);
    CHECK(getString(letter, "queue") == "order-steps");
    CHECK(getString(letter, "order_id") == id);
    CHECK_FALSE(letter->has("payment_id"));
    CHECK(getInt(letter, "attempts").value_or(0) >= 2);
    CHECK(getString(letter, "reason").value_or("").find("retry.max_attempts") != std::string::npos);
    CHECK(!getString(letter, "dead_at").value_or("").empty());
    CHECK(c.get("/dead-letters/" + dl).status == 200);
    CHECK(deadLetters(c, "queue=orders").empty());
    CHECK(deadLetters(c, "queue=order-steps").size() == 1);
    CHECK(eventually([&] { return getInt(getObject(getObject(status(c), "queues"), "order-steps"), "dead") == 1; }, 5s, 100ms));
    CHECK(count(status(c), "orders", "failed") == 1);

    auto replayed = c.post("/dead-letters/" + dl + "/replay", "");
    INFO(replayed.describe());
    REQUIRE(replayed.status == 202);
    CHECK(getString(replayed.obj(), "order_id") == id);
    CHECK(replayed.obj()->getValue<bool>("replayed"));

    // Processed again from its first step not completed: each step's
    // effect once, and the replay in its timeline.
    auto order = c.waitForOrderStatus(id, "awaiting_payment", 30s).obj();
    auto ev = events(order);
    INFO(stringify(getArray(order, "events")));
    CHECK(countEvents(ev, "status", "reason", "replayed") == 1);
    CHECK(countEvents(ev, "status", "status", "failed") == 1);
    CHECK(countEvents(ev, "step_completed", "step", "reserve_stock") == 1);
    CHECK(countEvents(ev, "step_completed", "step", "prepare_invoice") == 1);
    // It left the dead letters, and a second replay finds nothing.
    requireProblem(c.get("/dead-letters/" + dl), 404, "/problems/not-found");
    CHECK(deadLetters(c).empty());
    requireProblem(c.post("/dead-letters/" + dl + "/replay", ""), 404, "/problems/not-found");
    CHECK(count(status(c), "orders", "failed") == 0);
}

TEST_CASE("Bulk replay counts with dry_run, filters by queue and reason, and replays every match", "[admin][deadletter]")
{
    Daemon d({"orders.processing_ms=3000", "retry.backoff_ms=100"});
    HttpClient c(d.port());
    const auto ids = makeDeadOrders(d, c, 3);
    REQUIRE(deadLetters(c).size() == 3);

    // Pages: newest first, two then one, no one twice.
    auto page = c.get("/dead-letters?limit=2");
    REQUIRE(page.status == 200);
    CHECK(getArray(page.obj(), "dead_letters")->size() == 2);
    const std::string next = getString(page.obj(), "next").value_or("");
    REQUIRE(!next.empty());
    auto rest = c.get(next);
    CHECK(getArray(rest.obj(), "dead_letters")->size() == 1);
    CHECK(isNull(rest.obj(), "next"));
    std::set<std::string> seen;
    for (const auto& l : deadLetters(c, "limit=1")) seen.insert(getString(l, "id").value_or(""));
    CHECK(seen.size() == 3);

    auto dry = c.post("/dead-letters/replay", R"({"dry_run": true})");
    REQUIRE(dry.status == 200);
    CHECK(getInt(dry.obj(), "matched") == 3);
    CHECK(getInt(dry.obj(), "replayed") == 0);
    CHECK(deadLetters(c).size() == 3);  // nothing changed
    auto otherQueue = c.post("/dead-letters/replay", R"({"queue": "payments"})");
    CHECK(getInt(otherQueue.obj(), "matched") == 0);
    auto otherReason = c.post("/dead-letters/replay", R"({"reason_contains": "no such reason"})");
    CHECK(getInt(otherReason.obj(), "matched") == 0);
    CHECK(deadLetters(c).size() == 3);

    auto all = c.post("/dead-letters/replay", R"({"queue": "order-steps", "reason_contains": "retry.max_attempts"})");
    INFO(all.describe());
    REQUIRE(all.status == 200);
    CHECK(getInt(all.obj(), "matched") == 3);
    CHECK(getInt(all.obj(), "replayed") == 3);
    for (const auto& id : ids) c.waitForOrderStatus(id, "awaiting_payment", 30s);
    CHECK(deadLetters(c).empty());
}

// Embedded queue only ([.embedded]: not in the RabbitMQ registrations): a
// payment's message leaves the database once published, so its cut-short
// deliveries cannot be left behind there.
TEST_CASE("A payment's dead letter: replayed it is settled, and once its order is paid meanwhile it is a 409",
          "[admin][deadletter][.embedded]")
{
    Daemon d({"orders.processing_ms=1500", "retry.backoff_ms=100"});
    HttpClient c(d.port());
    auto deadPayment = [&](const std::string& orderId, const std::string& reference) {
        std::string paymentId;
        {
            // The payment worker stopped: the payment's message waits once
            // its order awaits payment; the daemon is killed with it there.
            FrozenThread worker(d.pid(), "payments-1");
            paymentId = c.createPayment(paymentJson(orderId, 2500, "EUR", "card", reference));
            c.waitForOrderStatus(orderId, "awaiting_payment", 20s);
            REQUIRE(eventually(
                [&] { return getInt(getObject(getObject(status(c), "queues"), "payments"), "ready") == 1; }, 10s, 50ms));
            d.signal(SIGKILL);
            worker.reapAfterKill();
            d.kill();
        }
        cutShortTwice(d, "payments", paymentId);
        d.restart({"retry.max_attempts=1"});
        auto p = c.waitForPaymentStatus(paymentId, "rejected", 20s).obj();
        CHECK(getString(p, "reason") == "processing_failed");
        waitDeadLetters(c, 1, "queue=payments");
        return paymentId;
    };

    SECTION("replayed: settled, and its order paid")
    {
        const auto orderId = c.createOrder(orderJson("pay@example.com"));
        const auto paymentId = deadPayment(orderId, "ref-replay");
        auto list = deadLetters(c, "queue=payments");
        REQUIRE(list.size() == 1);
        CHECK(getString(list.front(), "payment_id") == paymentId);
        CHECK_FALSE(list.front()->has("order_id"));
        auto r = c.post("/dead-letters/" + getString(list.front(), "id").value_or("") + "/replay", "");
        INFO(r.describe());
        REQUIRE(r.status == 202);
        c.waitForPaymentStatus(paymentId, "succeeded", 20s);
        auto order = c.waitForOrderStatus(orderId, "paid", 20s).obj();
        CHECK(countEvents(events(order), "payment", "reason", "replayed") == 1);
    }
    SECTION("its order paid by another payment meanwhile: 409, and it stays listed")
    {
        const auto orderId = c.createOrder(orderJson("paid@example.com"));
        deadPayment(orderId, "ref-dead");
        c.waitForPaymentStatus(c.createPayment(paymentJson(orderId, 2500, "EUR", "card", "ref-other")), "succeeded");
        c.waitForOrderStatus(orderId, "paid");
        auto list = deadLetters(c, "queue=payments");
        REQUIRE(list.size() == 1);
        const std::string dl = getString(list.front(), "id").value_or("");
        requireProblem(c.post("/dead-letters/" + dl + "/replay", ""), 409, "/problems/conflict");
        CHECK(c.get("/dead-letters/" + dl).status == 200);
        auto bulk = c.post("/dead-letters/replay", "{}");
        CHECK(getInt(bulk.obj(), "matched") == 1);
        CHECK(getInt(bulk.obj(), "replayed") == 0);
    }
}

TEST_CASE("Bad operator requests get clear problems", "[admin][badinput]")
{
    Daemon d;
    HttpClient c(d.port());
    requireProblem(c.get("/dead-letters?limit=0"), 422, "/problems/validation");
    requireProblem(c.get("/dead-letters?limit=201"), 422, "/problems/validation");
    requireProblem(c.get("/dead-letters?queue=bogus"), 422, "/problems/validation");
    requireProblem(c.get("/dead-letters?after=17"), 422, "/problems/validation");
    requireProblem(c.get("/dead-letters/nonsense"), 404, "/problems/not-found");
    requireProblem(c.post("/dead-letters/dl_x/replay", ""), 404, "/problems/not-found");
    requireProblem(c.post("/dead-letters/dl_999999/replay", ""), 404, "/problems/not-found");
    requireProblem(c.post("/dead-letters/replay", R"({"dry_run": "yes"})"), 422, "/problems/validation");
    requireProblem(c.post("/dead-letters/replay", R"({"queue": "elsewhere"})"), 422, "/problems/validation");
    requireProblem(c.post("/dead-letters/replay", R"({"everything": true})"), 422, "/problems/validation");
    requireProblem(c.post("/dead-letters/replay", R"([1, 2])"), 422, "/problems/validation");
    requireProblem(c.post("/dead-letters/replay", R"({"dry_run": tru)"), 400, "/problems/malformed-json");
    requireProblem(c.post("/dead-letters/replay", "x", {{"Content-Type", "text/plain"}}), 415,
                   "/problems/unsupported-media-type");
    requireProblem(c.post("/dead-letters/replay", std::string(70000, ' ')), 413);
    requireProblem(c.post("/status", "{}"), 405, "/problems/method-not-allowed");
    requireProblem(c.get("/dead-letters/replay"), 405, "/problems/method-not-allowed");
    requireProblem(c.post("/dead-letters", "{}"), 405, "/problems/method-not-allowed");
}

TEST_CASE("SIGHUP re-reads the admin token file too", "[admin][auth][signals]")
{
    TempDir secrets;
    const auto adminFile = secrets.write("admin-tokens", "old-admin\n", 0600);
    Daemon d({"http.auth.admin_token_file=" + adminFile});
    HttpClient oldAdmin(d.port(), "old-admin"), newAdmin(d.port(), "new-admin");
    REQUIRE(oldAdmin.get("/status").status == 200);
    REQUIRE(newAdmin.get("/status").status == 401);
    secrets.write("admin-tokens", "new-admin\n", 0600);
    d.signal(SIGHUP);
    CHECK(eventually([&] { return newAdmin.get("/status").status == 200 && oldAdmin.get("/status").status == 401; },
                     10s, 50ms));
    CHECK(d.log().find("admin tokens re-read from " + adminFile) != std::string::npos);
    // Without a client token file the client routes stay open.
    CHECK(HttpClient(d.port()).get("/orders").status == 200);
}
