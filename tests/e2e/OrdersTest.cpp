// Orders: creation, processing steps and events, listing, cancellation,
// idempotency.
#include "Daemon.h"
#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <regex>
#include <set>

using namespace e2e;

namespace {

const std::regex kOrderId("^ord_[0-9A-HJKMNP-TV-Z]{26}$");
const std::regex kTimestamp(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$)");

std::string statusOf(const HttpClient& c, const std::string& id)
{
    auto r = c.getOrder(id);
    INFO(r.describe());
    REQUIRE(r.status == 200);
    return getString(r.obj(), "status").value_or("<missing>");
}

} // namespace

TEST_CASE("POST /orders answers 202 with Location and the queued order resource", "[orders]")
{
    // Long processing so nothing but the first pick-up happens during the test.
    Daemon d({"orders.processing_ms=60000"});
    HttpClient c(d.port());

    const std::string body =
        R"({"customer":"alice@example.com","items":[{"sku":"BOOK-42","quantity":2,"unit_amount":1250},)"
        R"({"sku":"pen.blue_1","quantity":3,"unit_amount":100}],"metadata":{"channel":"web"}})";
    auto r = c.postOrder(body);
    INFO(r.describe());
    REQUIRE(r.status == 202);
    CHECK(r.contentType().rfind("application/json", 0) == 0);
    auto o = r.obj();
    auto id = getString(o, "id").value_or("");
    CHECK(std::regex_match(id, kOrderId));
    CHECK(r.header("Location") == "/orders/" + id);
    CHECK(getString(o, "status").value_or("") == "queued");
    CHECK(isNull(o, "reason"));
    CHECK(getString(o, "customer").value_or("") == "alice@example.com");
    CHECK(getString(o, "currency").value_or("") == "EUR"); // default from the shipped config
    CHECK(getInt(o, "total_amount").value_or(-1) == 2 * 1250 + 3 * 100);
    auto items = getArray(o, "items");
    REQUIRE(items);
    REQUIRE(items->size() == 2);
    CHECK(getString(arrayObject(items, 0), "sku").value_or("") == "BOOK-42");
    CHECK(getInt(arrayObject(items, 0), "quantity").value_or(-1) == 2);
    CHECK(getInt(arrayObject(items, 0), "unit_amount").value_or(-1) == 1250);
    CHECK(getString(arrayObject(items, 1), "sku").value_or("") == "pen.blue_1");
    CHECK(getString(getObject(o, "metadata"), "channel").value_or("") == "web");
    CHECK(std::regex_match(getString(o, "created_at").value_or(""), kTimestamp));
    CHECK(std::regex_match(getString(o, "updated_at").value_or(""), kTimestamp));

    // The resource is readable at Location, stored as sent.
    auto g = c.get(r.header("Location"));
    INFO(g.describe());
    REQUIRE(g.status == 200);
    auto go = g.obj();
    CHECK(getString(go, "id").value_or("") == id);
    CHECK(getInt(go, "total_amount").value_or(-1) == 2800);
    CHECK(getString(go, "customer").value_or("") == "alice@example.com");
    CHECK(getArray(go, "payments"));
    CHECK(getArray(go, "payments")->size() == 0);
    auto ev = events(go);
    REQUIRE(!ev.empty());
    CHECK(getString(ev[0], "type").value_or("") == "status");
    CHECK(getString(ev[0], "status").value_or("") == "queued");

    // metadata defaults to {}
    auto r2 = c.postOrder(orderJson("bob@example.com"));
    INFO(r2.describe());
    REQUIRE(r2.status == 202);
    auto meta = getObject(r2.obj(), "metadata");
    REQUIRE(meta);
    CHECK(meta->size() == 0);

    // Ids are unique and time-ordered.
    CHECK(getString(r2.obj(), "id").value_or("") > id);
}

TEST_CASE("The order currency defaults to orders.currency from the configuration", "[orders]")
{
    Daemon d({"orders.processing_ms=0", "orders.currency=GBP"});
    HttpClient c(d.port());
    auto r = c.postOrder(orderJson("carol@example.com", {{"TEA", 1, 350}}, /*currency=*/""));
    INFO(r.describe());
    REQUIRE(r.status == 202);
    CHECK(getString(r.obj(), "currency").value_or("") == "GBP");

    auto r2 = c.postOrder(orderJson("carol@example.com", {{"TEA", 1, 350}}, "USD"));
    INFO(r2.describe());
    REQUIRE(r2.status == 202);
    CHECK(getString(r2.obj(), "currency").value_or("") == "USD");
}

TEST_CASE("An order goes queued, processing, awaiting_payment through the three steps", "[orders][processing]")
{
    Daemon d({"orders.processing_ms=600"});
    HttpClient c(d.port());
    auto id = c.createOrder(orderJson("dave@example.com"));

    // Watch it move: it is seen in processing at some point.
    bool sawProcessing = eventually([&] { return statusOf(c, id) == "processing"; }, 10s, 10ms);
    CHECK(sawProcessing);

    auto r = c.waitForOrderStatus(id, "awaiting_payment", 20s);
    auto o = r.obj();
    CHECK(isNull(o, "reason"));
    checkProcessedExactlyOnce(o);
    auto ev = events(o);
    // Nothing but status and step events so far.
    for (const auto& e : ev) {
        auto t = getString(e, "type").value_or("");
        CHECK((t == "status" || t == "step_started" || t == "step_completed"));
    }
    CHECK(countEvents(ev, "step_started") == 3);
    CHECK(countEvents(ev, "status") == 3);
    CHECK(getString(o, "updated_at").value_or("") >= getString(o, "created_at").value_or("~"));

    // Each step is logged with the order id.
    auto log = d.log();
    CHECK(log.find(id) != std::string::npos);
    for (const char* step : {"validate", "reserve_stock", "prepare_invoice"}) {
        INFO("step " << step);
        CHECK(log.find(step) != std::string::npos);
    }
}

TEST_CASE("GET /orders paginates newest first with a cursor", "[orders][list]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    std::vector<std::string> created;
    for (int i = 0; i < 7; ++i)
        created.push_back(c.createOrder(orderJson("page" + std::to_string(i) + "@example.com")));
    std::vector<std::string> newestFirst(created.rbegin(), created.rend());

    std::vector<std::string> seen;
    std::vector<std::size_t> pageSizes;
    std::string path = "/orders?limit=3";
    for (int page = 0; page < 10; ++page) {
        auto r = c.get(path);
        INFO("GET " << path << " -> " << r.describe());
        REQUIRE(r.status == 200);
        auto o = r.obj();
        auto orders = getArray(o, "orders");
        REQUIRE(orders);
        pageSizes.push_back(orders->size());
        for (std::size_t i = 0; i < orders->size(); ++i) {
            auto e = arrayObject(orders, i);
            seen.push_back(getString(e, "id").value_or(""));
            // list entries carry no payments or events
            CHECK_FALSE(e->has("payments"));
            CHECK_FALSE(e->has("events"));
            CHECK(getString(e, "status").has_value());
            CHECK(getInt(e, "total_amount").value_or(-1) == 2500);
        }
        REQUIRE(o->has("next"));
        if (isNull(o, "next")) break;
        auto next = getString(o, "next");
        REQUIRE(next.has_value());
        CHECK(next->rfind("/orders?", 0) == 0);
        CHECK(next->find("after=" + seen.back()) != std::string::npos);
        path = *next;
    }
    CHECK(pageSizes == std::vector<std::size_t>{3, 3, 1});
    CHECK(seen == newestFirst);
    CHECK(std::set<std::string>(seen.begin(), seen.end()).size() == seen.size());

    // Default limit (50) returns all seven with next null.
    auto all = c.get("/orders");
    INFO(all.describe());
    REQUIRE(all.status == 200);
    CHECK(getArray(all.obj(), "orders")->size() == 7);
    CHECK(isNull(all.obj(), "next"));

    // Explicit cursor: after the third newest comes the fourth.
    auto after = c.get("/orders?limit=2&after=" + newestFirst[2]);
    INFO(after.describe());
    REQUIRE(after.status == 200);
    auto ao = getArray(after.obj(), "orders");
    REQUIRE(ao->size() == 2);
    CHECK(getString(arrayObject(ao, 0), "id").value_or("") == newestFirst[3]);
    CHECK(getString(arrayObject(ao, 1), "id").value_or("") == newestFirst[4]);

    // Limits at the edges are fine.
    CHECK(c.get("/orders?limit=1").status == 200);
    CHECK(c.get("/orders?limit=200").status == 200);
}

TEST_CASE("GET /orders filters by status", "[orders][list]")
{
    Daemon d({"orders.processing_ms=60000"});
    HttpClient c(d.port());
    auto first = c.createOrder(orderJson("filter1@example.com"));
    c.waitForOrderStatus(first, "processing", 10s);
    auto second = c.createOrder(orderJson("filter2@example.com"));
    auto third = c.createOrder(orderJson("filter3@example.com"));
    auto cancel = c.cancelOrder(third);
    INFO(cancel.describe());
    REQUIRE(cancel.status == 200);

    auto idsWith = [&](const std::string& status) {
        auto r = c.get("/orders?status=" + status);
        INFO(r.describe());
        REQUIRE(r.status == 200);
        auto arr = getArray(r.obj(), "orders");
        REQUIRE(arr);
        std::vector<std::string> ids;
        for (std::size_t i = 0; i < arr->size(); ++i) {
            auto e = arrayObject(arr, i);
            CHECK(getString(e, "status").value_or("") == status);
            ids.push_back(getString(e, "id").value_or(""));
        }
        return ids;
    };
    CHECK(idsWith("processing") == std::vector<std::string>{first});
    CHECK(idsWith("queued") == std::vector<std::string>{second});
    CHECK(idsWith("cancelled") == std::vector<std::string>{third});
    CHECK(idsWith("paid").empty());
    CHECK(idsWith("awaiting_payment").empty());
    CHECK(idsWith("failed").empty());
    CHECK(c.listAllOrderIds("limit=1&status=queued") == std::vector<std::string>{second});
}

TEST_CASE("GET /orders rejects a bad limit, status or after with 422", "[orders][list][errors]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    c.createOrder(orderJson("list@example.com"));
    for (const char* q : {"limit=0", "limit=201", "limit=-1", "limit=abc", "limit=1.5",
                          "status=bogus", "status=QUEUED", "after=not-an-id",
                          "after=ord_", "after=12345"}) {
        INFO("GET /orders?" << q);
        auto r = c.get(std::string("/orders?") + q);
        requireProblem(r, 422, "/problems/validation");
    }
}

TEST_CASE("A queued order can be cancelled once, other states answer 409", "[orders][cancel]")
{
    Daemon d({"orders.processing_ms=60000"});
    HttpClient c(d.port());
    auto busy = c.createOrder(orderJson("busy@example.com"));
    c.waitForOrderStatus(busy, "processing", 10s);
    auto waiting = c.createOrder(orderJson("waiting@example.com"));
    REQUIRE(statusOf(c, waiting) == "queued");

    auto r = c.cancelOrder(waiting);
    INFO(r.describe());
    REQUIRE(r.status == 200);
    auto o = r.obj();
    CHECK(getString(o, "id").value_or("") == waiting);
    CHECK(getString(o, "status").value_or("") == "cancelled");
    CHECK(!getString(o, "reason").value_or("").empty());

    auto g = c.getOrder(waiting);
    REQUIRE(g.status == 200);
    CHECK(getString(g.obj(), "status").value_or("") == "cancelled");
    auto ev = events(g.obj());
    CHECK(countEvents(ev, "status", "status", "cancelled") == 1);
    CHECK(countEvents(ev, "step_started") == 0);

    // Cancelling again, or cancelling a processing order: conflict.
    requireProblem(c.cancelOrder(waiting), 409, "/problems/conflict");
    requireProblem(c.cancelOrder(busy), 409, "/problems/conflict");
    CHECK(statusOf(c, busy) == "processing");
    CHECK(statusOf(c, waiting) == "cancelled");
    // Unknown order: 404.
    requireProblem(c.cancelOrder("ord_01JDQ8M4Z3X7K2N9P5R6S8T0VW"), 404, "/problems/not-found");
}

TEST_CASE("An order awaiting payment can be cancelled but a paid one cannot", "[orders][cancel]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    auto a = c.createOrder(orderJson("cancel-a@example.com"));
    c.waitForOrderStatus(a, "awaiting_payment");
    auto r = c.cancelOrder(a);
    INFO(r.describe());
    REQUIRE(r.status == 200);
    CHECK(getString(r.obj(), "status").value_or("") == "cancelled");
    requireProblem(c.cancelOrder(a), 409, "/problems/conflict");

    auto b = c.createOrder(orderJson("cancel-b@example.com"));
    c.waitForOrderStatus(b, "awaiting_payment");
    c.createPayment(paymentJson(b, 2500, "EUR", "card", "psp-cancel-b"));
    c.waitForOrderStatus(b, "paid");
    requireProblem(c.cancelOrder(b), 409, "/problems/conflict");
    CHECK(statusOf(c, b) == "paid");
}

TEST_CASE("POST /orders with an Idempotency-Key replays the first answer", "[orders][idempotency]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    const std::string body = orderJson("idem@example.com", {{"SKU-1", 4, 999}});
    const Headers key{{"Idempotency-Key", "order-key-0001"}};

    auto first = c.postOrder(body, key);
    INFO("first: " << first.describe());
    REQUIRE(first.status == 202);
    CHECK(first.header("Idempotent-Replayed") != "true");
    auto id = getString(first.obj(), "id").value_or("");
    c.waitForOrderStatus(id, "awaiting_payment");

    auto replay = c.postOrder(body, key);
    INFO("replay: " << replay.describe());
    REQUIRE(replay.status == 202);
    CHECK(replay.header("Idempotent-Replayed") == "true");
    CHECK(replay.header("Location") == first.header("Location"));
    // The first answer, not the current state of the order.
    CHECK(stringify(replay.json) == stringify(first.json));
    CHECK(getString(replay.obj(), "status").value_or("") == "queued");

    // Only one order exists.
    CHECK(c.listAllOrderIds() == std::vector<std::string>{id});

    // Same key, different body: 422, nothing created.
    auto other = c.postOrder(orderJson("idem@example.com", {{"SKU-1", 5, 999}}), key);
    requireProblem(other, 422, "/problems/validation");
    // Same key on another route: 422.
    auto pay = c.postPayment(paymentJson(id, 3996, "EUR", "card", "psp-idem"), key);
    requireProblem(pay, 422, "/problems/validation");
    CHECK(c.listAllOrderIds() == std::vector<std::string>{id});

    // A different key creates a new order.
    auto fresh = c.postOrder(body, {{"Idempotency-Key", "order-key-0002"}});
    INFO(fresh.describe());
    REQUIRE(fresh.status == 202);
    CHECK(getString(fresh.obj(), "id").value_or("") != id);
    CHECK(c.listAllOrderIds().size() == 2);

    // Keys outside 1-255 printable ASCII are rejected.
    requireProblem(c.postOrder(body, {{"Idempotency-Key", std::string(256, 'k')}}), 422,
                   "/problems/validation");
    requireProblem(c.postOrder(body, {{"Idempotency-Key", "caf\xc3\xa9"}}), 422,
                   "/problems/validation");
    // A key of exactly 255 characters is fine.
    auto longKey = c.postOrder(body, {{"Idempotency-Key", std::string(255, 'k')}});
    INFO(longKey.describe());
    CHECK(longKey.status == 202);
    CHECK(c.listAllOrderIds().size() == 3);
}

TEST_CASE("An idempotent order replay survives a daemon restart", "[orders][idempotency]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    const std::string body = orderJson("idem-restart@example.com");
    const Headers key{{"Idempotency-Key", "restart-key"}};
    auto first = c.postOrder(body, key);
    INFO(first.describe());
    REQUIRE(first.status == 202);
    d.kill(); // the idempotency record must be as durable as the order
    d.restart();
    auto replay = c.postOrder(body, key);
    INFO(replay.describe());
    REQUIRE(replay.status == 202);
    CHECK(replay.header("Idempotent-Replayed") == "true");
    CHECK(replay.header("Location") == first.header("Location"));
    CHECK(c.listAllOrderIds().size() == 1);
}

TEST_CASE("Pipelined requests on one connection are answered in order, deferred answers included", "[orders][http]")
{
    // Order writes answer after their commit, from whichever thread is free;
    // the answers on one connection still leave in the order asked.
    Daemon d({"orders.processing_ms=60000", "http.max_threads=2"});
    auto post = [](const std::string& path, const std::string& body) {
        return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\n\r\n" + body;
    };
    const std::string missingOrder = "ord_01JDQ8M4Z3X7K2N9P5R6S8T0VW";
    const std::string requests = post("/orders", orderJson("pipelined-1@example.com")) +  // 202, deferred
                                 post("/orders", "{not json") +                             // 400, at once
                                 post("/payment/confirm", paymentJson(missingOrder, 100)) + // 404, deferred
                                 post("/orders", orderJson("pipelined-2@example.com")) +  // 202, deferred
                                 "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    auto raw = rawExchange(d.port(), requests, 10s);
    INFO(raw.data);
    CHECK(raw.closed);

    // Split the stream into its responses (each has a Content-Length).
    std::vector<int> statuses;
    std::vector<std::string> bodies;
    std::size_t at = 0;
    while (at < raw.data.size()) {
        const auto headEnd = raw.data.find("\r\n\r\n", at);
        REQUIRE(headEnd != std::string::npos);
        const std::string head = raw.data.substr(at, headEnd - at);
        std::smatch m;
        REQUIRE(std::regex_search(head, m, std::regex(R"(^HTTP/1\.1 (\d{3}))")));
        statuses.push_back(std::stoi(m[1]));
        REQUIRE(std::regex_search(head, m, std::regex(R"(\r\nContent-Length: (\d+))", std::regex::icase)));
        const std::size_t length = std::stoul(m[1]);
        bodies.push_back(raw.data.substr(headEnd + 4, length));
        at = headEnd + 4 + length;
    }
    REQUIRE(statuses == std::vector<int>{202, 400, 404, 202, 200});
    CHECK(bodies[0].find("pipelined-1@example.com") != std::string::npos);
    CHECK(bodies[2].find(missingOrder) != std::string::npos);
    CHECK(bodies[3].find("pipelined-2@example.com") != std::string::npos);
}

TEST_CASE("Step events name the instance that ran them, and readiness and metrics name it too", "[orders][instance]")
{
    Daemon d({"orders.processing_ms=0", "instance.name=alpha-1"});
    HttpClient c(d.port());
    auto id = c.createOrder(orderJson("instance@example.com"));
    auto o = c.waitForOrderStatus(id, "awaiting_payment", 10s).obj();
    int steps = 0;
    for (const auto& e : events(o)) {
        const std::string type = getString(e, "type").value_or("");
        if (type == "step_started" || type == "step_completed") {
            ++steps;
            CHECK(getString(e, "instance").value_or("") == "alpha-1");
        } else {
            CHECK_FALSE(e->has("instance"));  // status events are the API's, not an instance's work
        }
    }
    CHECK(steps == 6);
    auto ready = c.get("/health/ready");
    CHECK(getString(ready.obj(), "instance").value_or("") == "alpha-1");
    auto metrics = c.get("/metrics");
    CHECK(metrics.body.find("orderpay_build_info{version=\"") != std::string::npos);
    CHECK(metrics.body.find("instance=\"alpha-1\"} 1") != std::string::npos);
}
