// Orders wait out their processing steps in durable timers, not threads:
// many are in processing at once, orders.concurrency bounds them, and a
// restart in the middle of the waits loses and repeats nothing.
#include "Daemon.h"
#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <regex>
#include <thread>

using namespace e2e;

namespace {

/// A sample of /metrics, the first series whose line starts with `prefix`.
double metric(const HttpClient& c, const std::string& series)
{
    auto r = c.get("/metrics");
    REQUIRE(r.status == 200);
    std::istringstream lines(r.body);
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    }
    FAIL("no series " << series << " in /metrics");
    return 0;
}

/// When an order entered `status`, from its events (RFC 3339 with
/// milliseconds: they order as text).
std::string statusAt(const Poco::JSON::Object::Ptr& order, const std::string& status)
{
    for (const auto& e : events(order)) {
        if (getString(e, "type").value_or("") == "status" && getString(e, "status").value_or("") == status)
            return getString(e, "at").value_or("");
    }
    return {};
}

}  // namespace

TEST_CASE("Orders at a slow processing pace are in processing together, each waiting in a timer",
          "[timers][concurrency]")
{
    // One worker thread; one order alone takes 3 s. One at a time, 200
    // orders would take ten minutes.
    Daemon d({"orders.processing_ms=3000", "orders.workers=1"});
    HttpClient c(d.port());
    std::vector<std::string> ids;
    for (int i = 0; i < 200; ++i) ids.push_back(c.createOrder(orderJson("pace" + std::to_string(i) + "@example.com")));

    // While they wait, the timers are the delayed messages of order-steps,
    // and most orders are in processing at once.
    std::int64_t mostInProcessing = 0;
    double mostDelayed = 0;
    const bool allDone = eventually(
        [&] {
            auto list = c.get("/orders?status=processing&limit=200");
            if (list.status == 200) {
                mostInProcessing = std::max<std::int64_t>(
                    mostInProcessing, static_cast<std::int64_t>(getArray(list.obj(), "orders")->size()));
            }
            mostDelayed = std::max(mostDelayed, metric(c, R"(orderpay_queue_depth{queue="order-steps",state="delayed"})"));
            auto waiting = c.get("/orders?status=awaiting_payment&limit=200");
            return waiting.status == 200 && getArray(waiting.obj(), "orders")->size() == ids.size();
        },
        60s, 100ms);
    INFO("most in processing at once: " << mostInProcessing << ", most timers waiting: " << mostDelayed);
    REQUIRE(allDone);
    CHECK(mostInProcessing >= 100);
    CHECK(mostDelayed >= 100);
    for (const auto& id : ids) checkProcessedExactlyOnce(c.getOrder(id).obj());
    // Each of the 600 steps ran off its timer, the last two of each order
    // after one; their lateness is measured.
    CHECK(metric(c, "orderpay_order_step_lateness_seconds_count") >= 2 * ids.size());
}

TEST_CASE("orders.concurrency = 1 processes one order at a time", "[timers][concurrency]")
{
    Daemon d({"orders.processing_ms=300", "orders.concurrency=1", "orders.workers=2"});
    HttpClient c(d.port());
    std::vector<std::string> ids;
    for (int i = 0; i < 6; ++i) ids.push_back(c.createOrder(orderJson("one" + std::to_string(i) + "@example.com")));
    std::vector<std::pair<std::string, std::string>> spans;  // processing .. awaiting_payment, per order
    for (const auto& id : ids) {
        auto o = c.waitForOrderStatus(id, "awaiting_payment", 30s).obj();
        checkProcessedExactlyOnce(o);
        spans.emplace_back(statusAt(o, "processing"), statusAt(o, "awaiting_payment"));
    }
    // No two orders were in processing at the same time (two workers took
    // them: which starts first is a race).
    std::sort(spans.begin(), spans.end());
    for (std::size_t i = 1; i < spans.size(); ++i) {
        INFO("order " << i << " started " << spans[i].first << ", the one before ended " << spans[i - 1].second);
        CHECK(spans[i].first >= spans[i - 1].second);
    }
}

TEST_CASE("SIGKILL while thousands of orders wait in their timers loses and repeats nothing", "[timers][crash]")
{
    Daemon d({"orders.processing_ms=4000"});
    HttpClient c(d.port());
    std::vector<std::string> ids;
    for (int i = 0; i < 1000; ++i) ids.push_back(c.createOrder(orderJson("wait" + std::to_string(i) + "@example.com")));
    // Killed once most orders have a step done and another in progress.
    REQUIRE(eventually(
        [&] {
            auto list = c.get("/orders?status=processing&limit=200");
            if (list.status != 200 || getArray(list.obj(), "orders")->size() < 200) return false;
            auto o = c.getOrder(ids[ids.size() / 2]);
            return o.status == 200 && countEvents(events(o.obj()), "step_completed") >= 1;
        },
        30s, 50ms));
    d.kill();
    d.restart();
    for (const auto& id : ids) {
        auto o = c.waitForOrderStatus(id, "awaiting_payment", 60s).obj();
        checkProcessedExactlyOnce(o);
    }
    auto processing = c.get("/orders?status=processing");
    REQUIRE(processing.status == 200);
    CHECK(getArray(processing.obj(), "orders")->size() == 0);
}
