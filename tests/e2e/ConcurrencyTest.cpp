// Many clients at once, two order workers: every order accepted once,
// processed once, listed once.
#include "Daemon.h"
#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <Poco/Exception.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

using namespace e2e;

TEST_CASE("2,000 orders from 8 concurrent clients are all accepted and processed exactly once", "[concurrency]")
{
    Daemon d({"orders.processing_ms=0", "orders.workers=2"});
    constexpr int kThreads = 8;
    constexpr int kPerThread = 250;
    constexpr std::size_t kTotal = kThreads * kPerThread;

    std::vector<std::vector<std::string>> idsByThread(kThreads);
    std::vector<std::vector<std::string>> failures(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            HttpClient c(d.port());
            for (int i = 0; i < kPerThread; ++i) {
                std::string customer = "client" + std::to_string(t) + "-order" + std::to_string(i) + "@example.com";
                try {
                    auto r = c.postOrder(orderJson(customer, {{"SKU-" + std::to_string(t), i % 7 + 1, 100 + i}}));
                    auto o = r.jsonObject(); // no Catch macros off the main thread
                    if (r.status != 202 || !o) {
                        failures[t].push_back(customer + ": " + r.describe());
                        continue;
                    }
                    auto id = getString(o, "id");
                    if (!id || getString(o, "customer").value_or("") != customer ||
                        r.header("Location") != "/orders/" + *id)
                        failures[t].push_back(customer + ": unexpected answer " + r.describe());
                    else
                        idsByThread[t].push_back(*id);
                } catch (const std::exception& e) {
                    failures[t].push_back(customer + ": " + e.what());
                }
            }
        });
    }
    for (auto& th : threads) th.join();

    std::vector<std::string> ids;
    std::size_t failureCount = 0;
    for (int t = 0; t < kThreads; ++t) {
        ids.insert(ids.end(), idsByThread[t].begin(), idsByThread[t].end());
        failureCount += failures[t].size();
        for (std::size_t i = 0; i < std::min<std::size_t>(3, failures[t].size()); ++i)
            UNSCOPED_INFO("thread " << t << ": " << failures[t][i]);
    }
    CHECK(failureCount == 0);
    REQUIRE(ids.size() == kTotal);
    std::set<std::string> unique(ids.begin(), ids.end());
    REQUIRE(unique.size() == kTotal);

    HttpClient c(d.port());
    // Poll the list until every order has been processed.
    std::size_t awaiting = 0;
    bool allDone = eventually(
        [&] {
            awaiting = c.listAllOrderIds("limit=200&status=awaiting_payment").size();
            return awaiting == kTotal;
        },
        60s, 250ms);
    INFO(awaiting << " of " << kTotal << " orders awaiting payment");
    REQUIRE(allDone);

    // Pagination through everything: exactly the 2,000, newest first, no repeats.
    auto listed = c.listAllOrderIds("limit=200");
    CHECK(listed.size() == kTotal);
    CHECK(std::set<std::string>(listed.begin(), listed.end()) == unique);
    CHECK(std::is_sorted(listed.begin(), listed.end(), std::greater<>()));
    // Odd page size too.
    auto listed7 = c.listAllOrderIds("limit=77");
    CHECK(listed7 == listed);

    // With two workers no order was processed twice: check every history.
    std::atomic<std::size_t> next{0};
    std::mutex mu;
    std::vector<std::string> bad;
    std::vector<std::thread> checkers;
    for (int t = 0; t < 4; ++t) {
        checkers.emplace_back([&] {
            HttpClient cc(d.port());
            for (std::size_t i = next++; i < ids.size(); i = next++) {
                try {
                    auto r = cc.getOrder(ids[i]);
                    auto o = r.jsonObject();
                    if (r.status != 200 || !o) {
                        std::lock_guard<std::mutex> lock(mu);
                        bad.push_back(ids[i] + ": " + r.describe());
                        continue;
                    }
                    std::vector<Poco::JSON::Object::Ptr> ev;
                    if (auto arr = getArray(o, "events"))
                        for (std::size_t k = 0; k < arr->size(); ++k) ev.push_back(arrayObject(arr, k));
                    bool good = countEvents(ev, "status", "status", "queued") == 1 &&
                                countEvents(ev, "status", "status", "processing") == 1 &&
                                countEvents(ev, "status", "status", "awaiting_payment") == 1 &&
                                countEvents(ev, "step_started") == 3 &&
                                countEvents(ev, "step_completed", "step", "validate") == 1 &&
                                countEvents(ev, "step_completed", "step", "reserve_stock") == 1 &&
                                countEvents(ev, "step_completed", "step", "prepare_invoice") == 1;
                    if (!good) {
                        std::lock_guard<std::mutex> lock(mu);
                        bad.push_back(ids[i] + ": " + stringify(getArray(o, "events")));
                    }
                } catch (const std::exception& e) {
                    std::lock_guard<std::mutex> lock(mu);
                    bad.push_back(ids[i] + ": " + e.what());
                }
            }
        });
    }
    for (auto& th : checkers) th.join();
    for (std::size_t i = 0; i < std::min<std::size_t>(5, bad.size()); ++i) UNSCOPED_INFO(bad[i]);
    CHECK(bad.empty());
    REQUIRE(d.running());
}

TEST_CASE("One commit takes the requests of more connections than there are HTTP threads", "[concurrency][performance]")
{
    // Two HTTP threads, sixteen clients. A thread that waited for its
    // request's commit would cap a transaction at two requests (plus the
    // worker's one lease and a health probe: the worker holds its order
    // for a minute); a deferred answer lets the writer take what every
    // connection sent meanwhile. On a fast disk a commit may be over before
    // the next request is parsed, but 800 orders are more than a WAL
    // checkpoint's worth of pages, and the requests sent during a checkpoint
    // (milliseconds of writes and a sync) go in one transaction. (With
    // synchronous=normal, no sync per commit at all, 67-91 of ~150
    // transactions held more than four requests; the previous code: none
    // of ~570.)
    Daemon d({"http.max_threads=2", "orders.processing_ms=60000", "orders.workers=1"});
    constexpr int kClients = 16;
    constexpr int kPerClient = 50;
    std::atomic<int> accepted{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < kClients; ++t) {
        clients.emplace_back([&, t] {
            HttpClient c(d.port());
            for (int i = 0; i < kPerClient; ++i) {
                try {
                    auto r = c.postOrder(orderJson("batch" + std::to_string(t) + "-" + std::to_string(i) + "@example.com"));
                    if (r.status == 202) ++accepted;
                } catch (const std::exception&) {
                    // counted as not accepted
                }
            }
        });
    }
    for (auto& th : clients) th.join();
    CHECK(accepted == kClients * kPerClient);

    HttpClient c(d.port());
    const std::string m = c.get("/metrics").body;
    auto sample = [&](const std::string& name) {
        std::smatch match;
        const std::regex line("(^|\\n)" + std::regex_replace(name, std::regex(R"([{}"+])"), R"(\$&)") + R"( ([0-9]+))");
        return std::regex_search(m, match, line) ? std::stoll(match[2]) : -1LL;
    };
    const auto transactions = sample("orderpay_store_batch_size_count");
    const auto upToFour = sample(R"(orderpay_store_batch_size_bucket{le="4"})");
    INFO("transactions " << transactions << ", of at most 4 units " << upToFour);
    REQUIRE(transactions > 0);
    CHECK(upToFour < transactions);  // at least one took more than four requests
}
