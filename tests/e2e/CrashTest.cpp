// SIGKILL at the worst moments: nothing acknowledged is lost, and redelivery
// never repeats a step, a status change or a payment.
#include "Daemon.h"
#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <Poco/Exception.h>

#include <sqlite3.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

using namespace e2e;

namespace {

// Waits until some order is `processing` with at least one but not all steps
// completed, i.e. killing now interrupts it mid-way. Returns its id.
std::string waitForOrderMidProcessing(const HttpClient& c, std::chrono::milliseconds timeout)
{
    std::string found;
    bool ok = eventually(
        [&] {
            auto list = c.get("/orders?status=processing");
            if (list.status != 200) return false;
            auto arr = getArray(list.obj(), "orders");
            if (!arr) return false;
            for (std::size_t i = 0; i < arr->size(); ++i) {
                auto id = getString(arrayObject(arr, i), "id").value_or("");
                auto r = c.getOrder(id);
                if (r.status != 200) continue;
                auto o = r.obj();
                if (getString(o, "status").value_or("") != "processing") continue;
                int done = countEvents(events(o), "step_completed");
                if (done >= 1 && done < 3) {
                    found = id;
                    return true;
                }
            }
            return false;
        },
        timeout, 10ms);
    INFO("no order was seen between two steps");
    REQUIRE(ok);
    return found;
}

} // namespace

TEST_CASE("Orders interrupted by SIGKILL complete exactly once after restart", "[crash]")
{
    Daemon d({"orders.processing_ms=900"});
    HttpClient c(d.port());
    std::vector<std::string> ids;
    for (int i = 0; i < 10; ++i)
        ids.push_back(c.createOrder(orderJson("crash" + std::to_string(i) + "@example.com")));

    // Kill twice, each time in the middle of an order's steps.
    std::set<std::string> interrupted;
    for (int round = 0; round < 2; ++round) {
        auto victim = waitForOrderMidProcessing(c, 15s);
        interrupted.insert(victim);
        d.kill();
        d.restart();
    }

    // Everything acknowledged is still there.
    auto listed = c.listAllOrderIds();
    CHECK(std::set<std::string>(listed.begin(), listed.end()) == std::set<std::string>(ids.begin(), ids.end()));

    for (const auto& id : ids) {
        INFO("order " << id << (interrupted.count(id) ? " (interrupted)" : ""));
        auto o = c.waitForOrderStatus(id, "awaiting_payment", 40s).obj();
        checkProcessedExactlyOnce(o);
    }
}

TEST_CASE("Every order acknowledged before SIGKILL is on disk after restart", "[crash][durability]")
{
    Daemon d({"orders.processing_ms=0"});
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::vector<std::string> acked;
    std::vector<std::thread> posters;
    for (int t = 0; t < 3; ++t) {
        posters.emplace_back([&, t] {
            HttpClient c(d.port());
            c.setTimeout(5s);
            for (int i = 0; !stop; ++i) {
                try {
                    auto r = c.postOrder(orderJson("durable-" + std::to_string(t) + "-" + std::to_string(i) + "@example.com"));
                    if (r.status != 202) continue;
                    auto id = getString(r.jsonObject(), "id"); // no Catch macros off the main thread
                    if (!id) continue;
                    std::lock_guard<std::mutex> lock(mu);
                    acked.push_back(*id);
                } catch (const Poco::Exception&) {
                    return; // the daemon is gone
                }
            }
        });
    }
    bool enough = eventually([&] {
        std::lock_guard<std::mutex> lock(mu);
        return acked.size() >= 150;
    }, 30s, 10ms);
    d.kill(); // while the posters are still sending
    stop = true;
    for (auto& t : posters) t.join();
    REQUIRE(enough);

    d.restart();
    HttpClient c(d.port());
    auto listed = c.listAllOrderIds();
    std::set<std::string> present(listed.begin(), listed.end());
    CHECK(present.size() == listed.size());
    std::size_t missing = 0;
    for (const auto& id : acked)
        if (!present.count(id)) ++missing;
    INFO(acked.size() << " acknowledged, " << listed.size() << " listed");
    CHECK(missing == 0);

    // And all of them get processed, exactly once.
    for (const auto& id : acked) {
        INFO("order " << id);
        checkProcessedExactlyOnce(c.waitForOrderStatus(id, "awaiting_payment", 30s).obj());
    }
}

TEST_CASE("Payments accepted before SIGKILL are applied exactly once after restart", "[crash][payments]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    std::vector<std::string> orders;
    for (int i = 0; i < 6; ++i) {
        orders.push_back(c.createOrder(orderJson("crashpay" + std::to_string(i) + "@example.com")));
    }
    for (const auto& id : orders) c.waitForOrderStatus(id, "awaiting_payment");

    std::vector<std::string> payments;
    for (std::size_t i = 0; i < orders.size(); ++i)
        payments.push_back(c.createPayment(paymentJson(orders[i], 2500, "EUR", "card", "psp-crash-" + std::to_string(i))));
    d.kill(); // some payments are queued, some maybe in flight
    d.restart();

    for (std::size_t i = 0; i < orders.size(); ++i) {
        INFO("order " << orders[i] << " payment " << payments[i]);
        c.waitForPaymentStatus(payments[i], "succeeded", 20s);
        auto o = c.waitForOrderStatus(orders[i], "paid", 10s).obj();
        auto ev = events(o);
        INFO("events: " << stringify(getArray(o, "events")));
        CHECK(countEvents(ev, "payment", "payment_id", payments[i]) == 1);
        CHECK(countEvents(ev, "status", "status", "paid") == 1);
        CHECK(getArray(o, "payments")->size() == 1);
        checkProcessedExactlyOnce(o);
    }
}

TEST_CASE("An order whose processing keeps getting killed is dead-lettered after retry.max_attempts", "[crash][deadletter][sqlite]")
{
    // Two deliveries allowed, both cut short by SIGKILL: the third start must
    // not deliver it again but end it (failed, with a reason). A step's
    // handling takes milliseconds (its wait is a timer, held by no one), so
    // the test leaves what two cut-short deliveries of the timer leave
    // behind: two attempts counted (the embedded queue: the message leased;
    // RabbitMQ: its delivery count, by the message's outbox id).
    Daemon d({"orders.processing_ms=3000", "retry.max_attempts=2", "retry.backoff_ms=100"});
    HttpClient c(d.port());
    auto id = c.createOrder(orderJson("poison@example.com"));
    REQUIRE(eventually([&] {
        auto r = c.getOrder(id);
        return r.status == 200 && countEvents(events(r.obj()), "step_started") == 1;
    }, 15s));
    d.kill();
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(d.dbPath().c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
    const std::string timer = "queue = 'order-steps' AND body LIKE '%" + id + "%'";
    const std::string sql =
        usingRabbitMq()
            ? "INSERT INTO deliveries (message_id, attempts, last_at) SELECT id, 2, 0 FROM messages WHERE " + timer
            : "UPDATE messages SET state = 'leased', attempts = 2, lease = 2 WHERE " + timer;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    const int changed = sqlite3_changes(db);
    sqlite3_close(db);
    REQUIRE(rc == SQLITE_OK);
    REQUIRE(changed == 1);  // the order's one timer
    d.restart();
    auto o = c.waitForOrderStatus(id, "failed", 20s).obj();
    CHECK(!getString(o, "reason").value_or("").empty());
    auto ev = events(o);
    INFO("events: " << stringify(getArray(o, "events")));
    CHECK(countEvents(ev, "status", "status", "failed") == 1);
    CHECK(countEvents(ev, "step_completed", "step", "prepare_invoice") == 0);
    // and it stays failed: no further delivery completes it
    CHECK_FALSE(eventually([&] {
        auto r = c.getOrder(id);
        return r.status == 200 && getString(r.obj(), "status").value_or("") != "failed";
    }, 2s, 100ms));
    CHECK(d.running());
}
