// Webhooks end to end: a real orderpayd delivering to a receiver the test runs
// on loopback (WebhookReceiver: the tests' own Standard Webhooks verification,
// in Python), through every path of a delivery: signed events in order,
// retries as scheduled, 410, a receiver that never answers, redirects, a
// rotation, SIGKILL between a state change and its delivery, TLS, the SSRF
// guard, bad input, and several instances on one PostgreSQL.
#include "Daemon.h"
#include "HttpClient.h"
#include "WebhookReceiver.h"

#include <catch2/catch.hpp>

#include <Poco/JSON/Array.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <map>
#include <set>

using namespace e2e;

namespace {

struct Endpoint {
    std::string id;
    std::string secret;
};

/// Daemon settings for webhooks to the loopback receiver: private networks
/// allowed, a short processing time.
std::vector<std::string> webhookDefines(std::vector<std::string> more = {})
{
    std::vector<std::string> d{"webhooks.allow_private_networks=true", "orders.processing_ms=20"};
    d.insert(d.end(), more.begin(), more.end());
    return d;
}

Endpoint registerEndpoint(const HttpClient& c, const std::string& url, const std::string& events = {})
{
    const std::string body = "{\"url\":" + quote(url) + (events.empty() ? "" : ",\"events\":" + events) + "}";
    const auto r = c.post("/webhook-endpoints", body);
    INFO(r.describe());
    REQUIRE(r.status == 201);
    const auto o = r.obj();
    Endpoint e{getString(o, "id").value_or(""), getString(o, "secret").value_or("")};
    CHECK(r.header("Location") == "/webhook-endpoints/" + e.id);
    CHECK(e.secret.rfind("whsec_", 0) == 0);
    return e;
}

/// The endpoint's delivery log, newest first.
std::vector<Poco::JSON::Object::Ptr> deliveries(const HttpClient& c, const std::string& id)
{
    const auto r = c.get("/webhook-endpoints/" + id + "/deliveries?limit=100");
    REQUIRE(r.status == 200);
    std::vector<Poco::JSON::Object::Ptr> all;
    const auto list = getArray(r.obj(), "deliveries");
    for (std::size_t i = 0; list && i < list->size(); ++i) all.push_back(arrayObject(list, i));
    return all;
}

std::string createOrder(const HttpClient& c, const std::string& customer = "webhook-customer")
{
    const auto r = c.postOrder(orderJson(customer));
    REQUIRE(r.status == 202);
    return getString(r.obj(), "id").value_or("");
}

/// Waits until the webhooks queue holds nothing (every delivery settled).
void waitQueueEmpty(const HttpClient& c)
{
    REQUIRE(eventually(
        [&] {
            const auto s = c.get("/status");
            const auto q = getObject(getObject(s.jsonObject(), "queues"), "webhooks");
            return q && getInt(q, "ready") == 0 && getInt(q, "in_flight") == 0 && getInt(q, "delayed") == 0;
        },
        20s, 100ms));
}

/// Every entry verified with each secret, its timestamp fresh, its body JSON
/// whose id is the webhook-id.
void checkSigned(const WebhookReceiver::Entry& e, std::size_t secrets = 1)
{
    INFO("delivery " << e.webhookId << ": " << e.body);
    CHECK(e.jsonOk);
    CHECK(e.timestampOk);
    CHECK(e.signatures == static_cast<int>(secrets));
    REQUIRE(e.verified.size() == secrets);
    for (bool ok : e.verified) CHECK(ok);
    CHECK(getString(e.json(), "id") == e.webhookId);
}

}  // namespace

TEST_CASE("The test receiver's verification agrees with the Standard Webhooks specification's published example")
{
    // The receiver refuses to start unless its HMAC check reproduces the
    // specification's example signature (and refuses a tampered one).
    CHECK(WebhookReceiver::selfTest() == 0);
}

TEST_CASE("Every event of an order's life arrives signed, sequence counting up, duplicates only with the same id")
{
    WebhookReceiver receiver;
    Daemon d(webhookDefines());
    HttpClient c(d.port());
    const Endpoint all = registerEndpoint(c, receiver.url("/all"));
    const Endpoint paidOnly = registerEndpoint(c, receiver.url("/paid"), R"(["order.paid"])");
    receiver.configure("/all", "ok", {all.secret});
    receiver.configure("/paid", "ok", {paidOnly.secret});

    // One order paid after a payment of the wrong amount, one cancelled.
    const std::string paid = createOrder(c);
    c.waitForOrderStatus(paid, "awaiting_payment", 20s);
    const auto wrong = c.postPayment(paymentJson(paid, 1, "EUR", "card", "psp-webhook-1"));
    REQUIRE(wrong.status == 202);
    c.waitForPaymentStatus(getString(wrong.obj(), "id").value_or(""), "rejected", 20s);
    REQUIRE(c.postPayment(paymentJson(paid, 2500, "EUR", "card", "psp-webhook-2")).status == 202);
    c.waitForOrderStatus(paid, "paid", 20s);
    const std::string cancelled = createOrder(c);
    c.waitForOrderStatus(cancelled, "awaiting_payment", 20s);
    REQUIRE(c.cancelOrder(cancelled).status == 200);

    const std::map<std::string, std::vector<std::string>> expected{
        {paid, {"order.processing", "order.awaiting_payment", "payment.rejected", "payment.succeeded", "order.paid"}},
        {cancelled, {"order.processing", "order.awaiting_payment", "order.cancelled"}}};
    std::map<std::string, std::vector<WebhookReceiver::Entry>> byOrder;
    REQUIRE(eventually(
        [&] {
            byOrder.clear();
            std::set<std::string> ids;
            for (const auto& e : receiver.log("/all")) {
                if (!e.jsonOk || !ids.insert(e.webhookId).second) continue;  // duplicates checked below
                const auto data = getObject(e.json(), "data");
                const std::string order = getString(data, "order_id").value_or(getString(data, "id").value_or(""));
                byOrder[order].push_back(e);
            }
            return byOrder[paid].size() >= 5 && byOrder[cancelled].size() >= 3;
        },
        20s, 100ms));

    for (const auto& [order, types] : expected) {
        INFO("order " << order);
        auto entries = byOrder[order];
        REQUIRE(entries.size() == types.size());
        // Delivered concurrently, so they may arrive out of order: the
        // sequence puts them back in it.
        std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
            return getInt(a.json(), "sequence") < getInt(b.json(), "sequence");
        });
        std::int64_t last = 0;
        for (std::size_t i = 0; i < entries.size(); ++i) {
            const auto& e = entries[i];
            checkSigned(e);
            const auto body = e.json();
            CHECK(getString(body, "type") == types[i]);
            const std::int64_t seq = getInt(body, "sequence").value_or(0);
            CHECK(seq > last);
            last = seq;
            CHECK(getString(body, "created_at").has_value());
            // The resource as the event left it.
            const auto data = getObject(body, "data");
            const std::string type = types[i];
            const std::string status = type.substr(type.find('.') + 1);
            CHECK(getString(data, "status") == status);
            if (type.rfind("payment.", 0) == 0) CHECK(getString(data, "order_id") == order);
            else CHECK(getString(data, "id") == order);
            CHECK(getString(data, "updated_at") == getString(body, "created_at"));
        }
    }
    // A redelivery carries the same id and the same body.
    std::map<std::string, std::string> bodies;
    for (const auto& e : receiver.log("/all")) {
        const auto [it, fresh] = bodies.emplace(e.webhookId, e.body);
        if (!fresh) CHECK(it->second == e.body);
    }
    // The endpoint for order.paid only got exactly that.
    REQUIRE(eventually([&] { return !receiver.log("/paid").empty(); }, 10s, 50ms));
    waitQueueEmpty(c);
    const auto paidLog = receiver.log("/paid");
    REQUIRE(paidLog.size() == 1);
    checkSigned(paidLog.front());
    CHECK(getString(paidLog.front().json(), "type") == "order.paid");
    // Each delivery is in its endpoint's log.
    const auto log = deliveries(c, all.id);
    CHECK(log.size() == bodies.size());
    for (const auto& entry : log) {
        CHECK(getInt(entry, "status_code") == 204);
        CHECK(isNull(entry, "error"));
        CHECK(getInt(entry, "attempt") == 1);
    }
}

TEST_CASE("A receiver that fails first is retried 5 s later, and the delivery log shows both attempts")
{
    WebhookReceiver receiver;
    Daemon d(webhookDefines());
    HttpClient c(d.port());
    const Endpoint e = registerEndpoint(c, receiver.url("/flaky"));
    receiver.configure("/flaky", "fail", {e.secret}, 1);
    const auto test = c.post("/webhook-endpoints/" + e.id + "/test", "");
    REQUIRE(test.status == 202);
    const std::string eventId = getString(test.obj(), "event_id").value_or("");

    REQUIRE(eventually([&] { return receiver.log("/flaky").size() >= 2; }, 20s, 100ms));
    const auto log = receiver.log("/flaky");
    REQUIRE(log.size() == 2);
    CHECK(log[0].answered == 500);
    CHECK(log[1].answered == 204);
    CHECK(log[0].webhookId == eventId);
    CHECK(log[1].webhookId == eventId);
    checkSigned(log[1]);
    CHECK(getString(log[1].json(), "type") == "webhook.test");
    // The schedule's first retry: 5 s after the failed attempt.
    const double gap = log[1].at - log[0].at;
    CHECK(gap >= 4.9);
    CHECK(gap < 9.0);

    REQUIRE(eventually([&] { return deliveries(c, e.id).size() == 2; }, 10s, 50ms));
    const auto attempts = deliveries(c, e.id);  // newest first
    CHECK(getInt(attempts[0], "attempt") == 2);
    CHECK(getInt(attempts[0], "status_code") == 204);
    CHECK(isNull(attempts[0], "error"));
    CHECK(getInt(attempts[1], "attempt") == 1);
    CHECK(getInt(attempts[1], "status_code") == 500);
    CHECK(getString(attempts[1], "error") == "answered 500");
    CHECK(getString(attempts[1], "event_id") == eventId);
    CHECK(getString(attempts[1], "event_type") == "webhook.test");
}

TEST_CASE("A Retry-After on a failed answer replaces the scheduled delay")
{
    WebhookReceiver receiver;
    Daemon d(webhookDefines());
    HttpClient c(d.port());
    const Endpoint e = registerEndpoint(c, receiver.url("/busy"));
    receiver.configure("/busy", "retry_after", {e.secret}, 1, "1");
    REQUIRE(c.post("/webhook-endpoints/" + e.id + "/test", "").status == 202);
    REQUIRE(eventually([&] { return receiver.log("/busy").size() >= 2; }, 20s, 50ms));
    const auto log = receiver.log("/busy");
    CHECK(log[0].answered == 503);
    CHECK(log[1].answered == 204);
    const double gap = log[1].at - log[0].at;
    CHECK(gap >= 0.9);
    CHECK(gap < 4.0);  // not the scheduled 5 s
}

TEST_CASE("A receiver that answers 410 disables its endpoint: nothing more is sent to it")
{
    WebhookReceiver receiver;
    Daemon d(webhookDefines());
    HttpClient c(d.port());
    const Endpoint gone = registerEndpoint(c, receiver.url("/gone"));
    const Endpoint live = registerEndpoint(c, receiver.url("/live"));
    receiver.configure("/gone", "gone", {gone.secret});
    receiver.configure("/live", "ok", {live.secret});
    REQUIRE(c.post("/webhook-endpoints/" + gone.id + "/test", "").status == 202);
    REQUIRE(eventually(
        [&] {
            const auto r = c.get("/webhook-endpoints/" + gone.id);
            return r.status == 200 && r.jsonObject() && r.jsonObject()->getValue<bool>("enabled") == false;
        },
        10s, 50ms));
    const auto endpoint = c.get("/webhook-endpoints/" + gone.id).obj();
    CHECK(getString(endpoint, "disabled_reason").value_or("").find("410") != std::string::npos);

    // An order's events reach the live endpoint and not the disabled one.
    const std::string order = createOrder(c);
    c.waitForOrderStatus(order, "awaiting_payment", 20s);
    REQUIRE(eventually([&] { return receiver.log("/live").size() >= 2; }, 10s, 50ms));
    waitQueueEmpty(c);
    CHECK(receiver.log("/gone").size() == 1);  // the test event only
    const auto attempts = deliveries(c, gone.id);
    REQUIRE(attempts.size() == 1);
    CHECK(getInt(attempts[0], "status_code") == 410);
}

TEST_CASE("A receiver that never answers delays neither the other endpoints nor the API")
{
    WebhookReceiver receiver;
    Daemon d(webhookDefines({"webhooks.timeout=3s"}));
    HttpClient c(d.port());
    const Endpoint hung = registerEndpoint(c, receiver.url("/hang"));
    const Endpoint live = registerEndpoint(c, receiver.url("/live"));
    receiver.configure("/hang", "hang", {hung.secret});
    receiver.configure("/live", "ok", {live.secret});

    const auto started = std::chrono::steady_clock::now();
    std::vector<std::string> orders;
    Millis slowest{0};
    for (int i = 0; i < 20; ++i) {
        const auto before = std::chrono::steady_clock::now();
        orders.push_back(createOrder(c, "hang-" + std::to_string(i)));
        slowest = std::max(slowest, std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - before));
    }
    // Every event reaches the live endpoint while the hung one holds its
    // share of the slots for webhooks.timeout.
    REQUIRE(eventually([&] { return receiver.log("/live").size() >= 40; }, 20s, 50ms));
    const auto liveDone = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started);
    INFO("slowest POST " << slowest.count() << " ms; all 40 events at the live endpoint after " << liveDone.count() << " ms");
    CHECK(slowest < (underSanitizers() ? 1500ms : 500ms));
    CHECK(liveDone < 3000ms);  // before the hung endpoint's first attempts time out
    for (const auto& e : receiver.log("/live")) checkSigned(e);
    // The hung endpoint's attempts end at the timeout, as failures to retry.
    REQUIRE(eventually([&] { return !deliveries(c, hung.id).empty(); }, 15s, 100ms));
    const auto attempt = deliveries(c, hung.id).front();
    CHECK(isNull(attempt, "status_code"));
    CHECK(getString(attempt, "error").value_or("").find("no answer within webhooks.timeout") != std::string::npos);
    CHECK(getInt(attempt, "duration_ms").value_or(0) >= 2900);
}

TEST_CASE("An endpoint that keeps failing with no answer rests: one probe at a time, and every event arrives "
          "once it answers")
{
    WebhookReceiver receiver;
    Daemon d(webhookDefines({"webhooks.timeout=1s"}));
    HttpClient c(d.port());
    const Endpoint down = registerEndpoint(c, receiver.url("/down"));
    receiver.configure("/down", "hang", {down.secret});
    for (int i = 0; i < 10; ++i) createOrder(c, "rest-" + std::to_string(i));

    // The first attempts time out; after three failures in a row with no
    // answer the endpoint rests (5 s), and says so.
    REQUIRE(eventually([&] { return d.log().find("it rests") != std::string::npos; }, 15s, 50ms));
    const std::size_t tried = deliveries(c, down.id).size();
    INFO(tried << " attempts when the rest began");
    CHECK(tried >= 3);
    CHECK(tried <= 8);  // what was in flight then (half the slots)
    // During the rest nothing more is tried (those in flight when it began
    // end meanwhile): without it the endpoint would take 4 timed-out
    // attempts a second (its slow share of the slots), over 20 in all by
    // the end of these 3 s.
    CHECK_FALSE(eventually([&] { return deliveries(c, down.id).size() > 12; }, 3s, 100ms));
    for (const auto& a : deliveries(c, down.id)) CHECK(isNull(a, "status_code"));

    // It answers again: the next probe gets through, and then every event.
    receiver.configure("/down", "ok", {down.secret});
    REQUIRE(eventually(
        [&] {
            std::set<std::string> ids;
            for (const auto& e : receiver.log("/down"))
                if (e.answered == 204) ids.insert(e.webhookId);
            return ids.size() >= 20;
        },
        30s, 100ms));
    for (const auto& e : receiver.log("/down"))
        if (e.answered == 204) checkSigned(e);
    REQUIRE(eventually([&] { return d.log().find("answers again") != std::string::npos; }, 5s, 50ms));
    waitQueueEmpty(c);
}

TEST_CASE("A redirect is not followed: the attempt fails and is retried")
{
    WebhookReceiver receiver;
    Daemon d(webhookDefines());
    HttpClient c(d.port());
    const Endpoint e = registerEndpoint(c, receiver.url("/moved"));
    receiver.configure("/moved", "redirect", {e.secret});
    REQUIRE(c.post("/webhook-endpoints/" + e.id + "/test", "").status == 202);
    REQUIRE(eventually([&] { return !deliveries(c, e.id).empty(); }, 10s, 50ms));
    const auto attempt = deliveries(c, e.id).front();
    CHECK(getInt(attempt, "status_code") == 302);
    CHECK(getString(attempt, "error").value_or("").find("redirects are not followed") != std::string::npos);
    CHECK(receiver.log("/moved").size() == 1);
    CHECK(receiver.log("/redirected").empty());
}

TEST_CASE("A rotated secret signs beside the new one: two signatures, each verified")
{
    WebhookReceiver receiver;
    Daemon d(webhookDefines());
    HttpClient c(d.port());
    const Endpoint e = registerEndpoint(c, receiver.url("/rotating"));
    const auto r = c.post("/webhook-endpoints/" + e.id + "/rotate", "");
    REQUIRE(r.status == 200);
    const std::string fresh = getString(r.obj(), "secret").value_or("");
    CHECK(fresh.rfind("whsec_", 0) == 0);
    CHECK(fresh != e.secret);
    CHECK(getString(r.obj(), "previous_secret_expires_at").has_value());
    // The secret is shown only by the answers that make one.
    CHECK_FALSE(c.get("/webhook-endpoints/" + e.id).obj()->has("secret"));

    receiver.configure("/rotating", "ok", {fresh, e.secret});
    REQUIRE(c.post("/webhook-endpoints/" + e.id + "/test", "").status == 202);
    REQUIRE(eventually([&] { return !receiver.log("/rotating").empty(); }, 10s, 50ms));
    const auto entry = receiver.log("/rotating").front();
    checkSigned(entry, 2);
    // The new secret's signature comes first.
    receiver.setSecrets("/rotating", {fresh});
    REQUIRE(c.post("/webhook-endpoints/" + e.id + "/test", "").status == 202);
    REQUIRE(eventually([&] { return receiver.log("/rotating").size() >= 2; }, 10s, 50ms));
    CHECK(receiver.log("/rotating")[1].verified == std::vector<bool>{true});
}

TEST_CASE("Events committed before a SIGKILL are delivered after the restart, none lost")
{
    WebhookReceiver receiver;
    Daemon d(webhookDefines({"orders.processing_ms=0"}));
    HttpClient c(d.port());
    const Endpoint e = registerEndpoint(c, receiver.url("/durable"), R"(["order.awaiting_payment"])");
    receiver.configure("/durable", "ok", {e.secret});
    std::vector<std::string> orders;
    {
        // The delivering thread stopped: the events are committed with their
        // orders' moves, and none can leave before the kill.
        FrozenThread frozen(d.pid(), "webhooks");
        for (int i = 0; i < 30; ++i) orders.push_back(createOrder(c, "durable-" + std::to_string(i)));
        for (const auto& id : orders) c.waitForOrderStatus(id, "awaiting_payment", 20s);
        CHECK(receiver.log("/durable").empty());
        d.signal(SIGKILL);
        frozen.reapAfterKill();
    }
    d.waitExit(10s);
    d.restart();
    REQUIRE(eventually([&] { return receiver.log("/durable").size() >= orders.size(); }, 30s, 100ms));
    std::set<std::string> delivered;
    for (const auto& entry : receiver.log("/durable")) {
        checkSigned(entry);
        delivered.insert(getString(getObject(entry.json(), "data"), "id").value_or(""));
    }
    CHECK(delivered == std::set<std::string>(orders.begin(), orders.end()));
}

TEST_CASE("TLS is verified: an untrusted certificate fails the delivery, webhooks.ca_file trusts it")
{
    TempDir certs;
    const std::string cert = certs.path() + "/cert.pem";
    const std::string key = certs.path() + "/key.pem";
    const std::string command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
                                "-addext subjectAltName=IP:127.0.0.1 -keyout '" + key + "' -out '" + cert +
                                "' >/dev/null 2>&1";
    REQUIRE(std::system(command.c_str()) == 0);
    WebhookReceiver receiver(cert, key);
    Daemon d(webhookDefines());
    HttpClient c(d.port());
    const Endpoint e = registerEndpoint(c, receiver.url("/tls"));
    receiver.configure("/tls", "ok", {e.secret});
    REQUIRE(c.post("/webhook-endpoints/" + e.id + "/test", "").status == 202);
    REQUIRE(eventually([&] { return !deliveries(c, e.id).empty(); }, 10s, 50ms));
    const auto refused = deliveries(c, e.id).front();
    CHECK(isNull(refused, "status_code"));
    CHECK(getString(refused, "error").value_or("").find("certificate") != std::string::npos);
    CHECK(receiver.log("/tls").empty());
    CHECK(receiver.tlsHandshakeFailures() >= 1);

    d.terminate();
    d.restart({"webhooks.ca_file=" + cert});
    REQUIRE(c.post("/webhook-endpoints/" + e.id + "/test", "").status == 202);
    REQUIRE(eventually([&] { return !receiver.log("/tls").empty(); }, 10s, 50ms));
    checkSigned(receiver.log("/tls").front());
}

TEST_CASE("Without webhooks.allow_private_networks a delivery to a private address is refused at connect time")
{
    WebhookReceiver receiver;
    Daemon d(webhookDefines());
    HttpClient c(d.port());
    // Registered while allowed (an https URL, so the protocol passes), then
    // the daemon restarted without the setting.
    const Endpoint e = registerEndpoint(c, "https://127.0.0.1:" + std::to_string(receiver.port()) + "/inside");
    receiver.configure("/inside", "ok", {e.secret});
    d.terminate();
    d.restart({"webhooks.allow_private_networks=false"});
    REQUIRE(c.post("/webhook-endpoints/" + e.id + "/test", "").status == 202);
    REQUIRE(eventually([&] { return !deliveries(c, e.id).empty(); }, 10s, 50ms));
    const auto attempt = deliveries(c, e.id).front();
    CHECK(getString(attempt, "error").value_or("").find("refused to connect to 127.0.0.1") != std::string::npos);
    CHECK(receiver.log("/inside").empty());
    CHECK(receiver.tlsHandshakeFailures() == 0);  // no connection was made at all
}

TEST_CASE("Endpoints: bad input is a 422 problem naming the field, and nothing is stored")
{
    Daemon d;
    HttpClient c(d.port());
    const std::vector<std::pair<std::string, std::string>> bad{
        {R"({"url": "not a url"})", "url"},
        {R"({"url": "://nohost"})", "url"},
        {R"({"url": "ftp://203.0.113.10/x"})", "url"},
        {R"({"url": "http://203.0.113.10/x"})", "url"},
        {R"({"url": "https://127.0.0.1/x"})", "url"},
        {R"({"url": "https://10.1.2.3/x"})", "url"},
        {R"({"url": "https://192.168.0.1/x"})", "url"},
        {R"({"url": "https://169.254.169.254/latest/meta-data"})", "url"},
        {R"({"url": "https://[::1]/x"})", "url"},
        {R"({"url": "https://[fe80::1]/x"})", "url"},
        {R"({"url": "https://localhost/x"})", "url"},
        {R"({"url": "https://user:pw@203.0.113.10/x"})", "url"},
        {R"({"url": 42})", "url"},
        {R"({"events": ["order.paid"]})", "url"},
        {R"({"url": "https://203.0.113.10/x", "events": ["order.shipped"]})", "events[0]"},
        {R"({"url": "https://203.0.113.10/x", "events": ["order.paid", "order.paid"]})", "events[1]"},
        {R"({"url": "https://203.0.113.10/x", "events": []})", "events"},
        {R"({"url": "https://203.0.113.10/x", "events": "order.paid"})", "events"},
        {R"({"url": "https://203.0.113.10/x", "events": ["order.paid", "order.failed", "order.cancelled", "order.processing",
            "order.awaiting_payment", "payment.succeeded", "payment.rejected", "order.paid"]})", "events"},
        {R"({"url": "https://203.0.113.10/x", "colour": "red"})", "colour"},
        {"{\"url\": \"https://203.0.113.10/" + std::string(2100, 'a') + "\"}", "url"},
    };
    for (const auto& [body, field] : bad) {
        INFO(body);
        const auto r = c.post("/webhook-endpoints", body);
        requireProblem(r, 422);
        const auto fields = errorFields(r);
        CHECK(std::find(fields.begin(), fields.end(), field) != fields.end());
    }
    requireProblem(c.post("/webhook-endpoints", "{\"url\":"), 400);
    requireProblem(c.post("/webhook-endpoints", std::string(70000, ' ')), 413);
    requireProblem(c.post("/webhook-endpoints", "[]"), 422);
    requireProblem(c.request("POST", "/webhook-endpoints", R"({"url":"https://203.0.113.10/x"})",
                             {{"Content-Type", "text/plain"}}),
                   415);
    CHECK(getArray(c.get("/webhook-endpoints").obj(), "webhook_endpoints")->size() == 0);

    // A public address is taken (not resolved: a literal), and can go again.
    const Endpoint e = registerEndpoint(c, "https://203.0.113.10/hooks", R"(["order.paid","payment.rejected"])");
    const auto one = c.get("/webhook-endpoints/" + e.id);
    REQUIRE(one.status == 200);
    CHECK(getString(one.obj(), "url") == "https://203.0.113.10/hooks");
    CHECK(getArray(one.obj(), "events")->size() == 2);
    CHECK(one.obj()->getValue<bool>("enabled"));
    CHECK(isNull(one.obj(), "disabled_reason"));
    CHECK(getArray(c.get("/webhook-endpoints").obj(), "webhook_endpoints")->size() == 1);
    requireProblem(c.request("PUT", "/webhook-endpoints/" + e.id), 405);
    requireProblem(c.get("/webhook-endpoints/" + e.id + "/deliveries?limit=0"), 422);
    requireProblem(c.get("/webhook-endpoints/" + e.id + "/deliveries?after=nope"), 422);
    const auto empty = c.get("/webhook-endpoints/" + e.id + "/deliveries");
    REQUIRE(empty.status == 200);
    CHECK(getArray(empty.obj(), "deliveries")->size() == 0);
    CHECK(isNull(empty.obj(), "next"));
    const auto removed = c.request("DELETE", "/webhook-endpoints/" + e.id);
    CHECK(removed.status == 204);
    CHECK(removed.body.empty());
    for (const std::string& path : {"/webhook-endpoints/" + e.id, std::string("/webhook-endpoints/we_nope/deliveries")})
        requireProblem(c.get(path), 404);
    requireProblem(c.request("DELETE", "/webhook-endpoints/" + e.id), 404);
    requireProblem(c.post("/webhook-endpoints/" + e.id + "/rotate", ""), 404);
    requireProblem(c.post("/webhook-endpoints/" + e.id + "/test", ""), 404);
}

TEST_CASE("Webhook routes need the admin token, and a client token gets 403", "[auth]")
{
    TempDir files;
    const std::string clientFile = files.write("client-tokens", "client-token-webhooks-0123456789\n");
    const std::string adminFile = files.write("admin-tokens", "admin-token-webhooks-0123456789\n");
    Daemon d({"http.auth.token_file=" + clientFile, "http.auth.admin_token_file=" + adminFile});
    HttpClient anonymous(d.port());
    HttpClient client(d.port(), "client-token-webhooks-0123456789");
    HttpClient admin(d.port(), "admin-token-webhooks-0123456789");
    const std::string body = R"({"url":"https://203.0.113.10/x"})";
    requireProblem(anonymous.post("/webhook-endpoints", body), 401);
    requireProblem(client.post("/webhook-endpoints", body), 403);
    requireProblem(client.get("/webhook-endpoints"), 403);
    CHECK(admin.post("/webhook-endpoints", body).status == 201);
    CHECK(admin.get("/webhook-endpoints").status == 200);
}

TEST_CASE("Three instances on one PostgreSQL deliver every event, each by one instance, at least once",
          "[.postgresql]")
{
    if (!usingPostgresql()) FAIL("runs only against the suite's PostgreSQL (\"e2e-postgresql: ...\")");
    WebhookReceiver receiver;
    PostgresqlDatabase db;
    const std::string prefix = uniqueBrokerPrefix();
    auto defines = [&](const std::string& name) {
        std::vector<std::string> d = webhookDefines({"store.kind=postgresql", "store.postgresql.uri=" + db.uri(),
                                                     "instance.name=" + name, "orders.processing_ms=0"});
        if (usingRabbitMq()) d.push_back("broker.rabbitmq.prefix=" + prefix);
        return d;
    };
    Daemon a(defines("a")), b(defines("b")), c3(defines("c"));
    HttpClient ca(a.port()), cb(b.port()), cc(c3.port());
    const Endpoint e = registerEndpoint(ca, receiver.url("/shared"), R"(["order.processing","order.awaiting_payment"])");
    receiver.configure("/shared", "ok", {e.secret});
    // Within a second every instance knows the endpoint (each reads the
    // endpoints once a second), and announces its events to it from then on.
    const std::vector<const HttpClient*> clients{&ca, &cb, &cc};
    for (const auto* client : clients) {
        REQUIRE(eventually(
            [&] { return client->get("/metrics").body.find("\norderpay_webhook_endpoints 1\n") != std::string::npos; },
            5s, 50ms));
    }
    std::vector<std::string> orders;
    for (int i = 0; i < 90; ++i) orders.push_back(createOrder(*clients[static_cast<std::size_t>(i % 3)], "pg-" + std::to_string(i)));
    for (const auto& id : orders) ca.waitForOrderStatus(id, "awaiting_payment", 30s);
    REQUIRE(eventually([&] { return receiver.log("/shared").size() >= 2 * orders.size(); }, 30s, 100ms));
    std::map<std::string, int> perEvent;
    std::set<std::string> processing, awaiting;
    for (const auto& entry : receiver.log("/shared")) {
        checkSigned(entry);
        ++perEvent[entry.webhookId];
        const auto body = entry.json();
        const std::string order = getString(getObject(body, "data"), "id").value_or("");
        (getString(body, "type") == "order.processing" ? processing : awaiting).insert(order);
    }
    const std::set<std::string> all(orders.begin(), orders.end());
    CHECK(processing == all);
    CHECK(awaiting == all);
    int duplicates = 0;
    for (const auto& [id, n] : perEvent) duplicates += n - 1;
    INFO(duplicates << " duplicate deliveries");
    CHECK(duplicates == 0);  // nothing failed or froze: at least once is exactly once here
}

TEST_CASE("PostgreSQL stopped while deliveries are in hand: the dispatcher waits it out and delivers every event after",
          "[.postgresql][outage]")
{
    if (!usingPostgresql()) FAIL("runs only against the suite's PostgreSQL (\"e2e-postgresql: ...\")");
    TempDir dir;
    PrivatePostgresql server(dir.path() + "/server");
    WebhookReceiver receiver;
    std::vector<std::string> defines = webhookDefines({"store.kind=postgresql", "store.postgresql.uri=" + server.uri(),
                                                       "orders.processing_ms=0", "webhooks.concurrency=1",
                                                       "webhooks.timeout=2s"});
    if (usingRabbitMq()) defines.push_back("broker.rabbitmq.prefix=" + uniqueBrokerPrefix());
    Daemon d(defines);
    HttpClient c(d.port());
    const Endpoint e = registerEndpoint(c, receiver.url("/outage"), R"(["order.awaiting_payment"])");
    // One delivery in flight that never answers, the others in hand waiting.
    receiver.configure("/outage", "hang", {e.secret});
    std::vector<std::string> orders;
    for (int i = 0; i < 10; ++i) orders.push_back(createOrder(c, "outage-" + std::to_string(i)));
    for (const auto& id : orders) c.waitForOrderStatus(id, "awaiting_payment", 20s);
    REQUIRE(eventually([&] { return !receiver.log("/outage").empty(); }, 10s, 50ms));

    // Down while the hung delivery times out and the next ones read their
    // events: nothing is lost, the daemon stays up.
    server.stop();
    receiver.configure("/outage", "ok", {e.secret});
    REQUIRE(eventually([&] { return d.log().find("no answer within webhooks.timeout") != std::string::npos; }, 10s,
                       100ms));
    REQUIRE(d.running());
    server.start();
    REQUIRE(eventually(
        [&] {
            std::set<std::string> delivered;
            for (const auto& entry : receiver.log("/outage"))
                if (entry.answered == 204) delivered.insert(getString(getObject(entry.json(), "data"), "id").value_or(""));
            return delivered == std::set<std::string>(orders.begin(), orders.end());
        },
        60s, 200ms));
    REQUIRE(d.running());
}
