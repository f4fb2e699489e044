// The shipped monitoring files (monitoring/): every metric the Prometheus
// alert rules and the Grafana dashboard name is one the daemon exports.
// The suite runs on SQLite and PostgreSQL, each with the embedded queue and
// RabbitMQ; each run checks the names of the store it runs on, so together
// they check every name.
#include "Daemon.h"
#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

using namespace e2e;

namespace {

// Every orderpay_* token of a file, comments and descriptions included: a
// name an operator reads there must exist too. (`up`, the other metric the
// rules use, is Prometheus's own.)
std::set<std::string> metricNamesIn(const std::string& text)
{
    static const std::regex name(R"(orderpay_[a-z0-9_]+)");
    std::set<std::string> names;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), name); it != std::sregex_iterator(); ++it)
        names.insert(it->str());
    return names;
}

// What a /metrics body exports: the name of every sample, and the type of
// every family (# TYPE) by its name.
struct Exported {
    std::set<std::string> samples;
    std::map<std::string, std::string> types;

    explicit Exported(const std::string& body)
    {
        std::istringstream lines(body);
        std::string line;
        while (std::getline(lines, line)) {
            if (line.rfind("# TYPE ", 0) == 0) {
                std::istringstream words(line.substr(7));
                std::string family, type;
                words >> family >> type;
                types[family] = type;
            } else if (!line.empty() && line[0] != '#') {
                samples.insert(line.substr(0, line.find_first_of("{ ")));
            }
        }
    }

    // A sample's name, or a histogram's family name (its samples are
    // name_bucket, name_sum and name_count) with samples.
    bool has(const std::string& name) const
    {
        if (samples.count(name)) return true;
        const auto type = types.find(name);
        return type != types.end() && type->second == "histogram" && samples.count(name + "_bucket") &&
               samples.count(name + "_sum") && samples.count(name + "_count");
    }
};

// Names only the other store exports: PostgreSQL's pool and connections,
// SQLite's heap. They are checked by the runs on that store.
bool otherStoresMetric(const std::string& name)
{
    if (usingPostgresql()) return name.rfind("orderpay_sqlite_", 0) == 0;
    return name.rfind("orderpay_postgresql_", 0) == 0;
}

} // namespace

TEST_CASE("Every metric the shipped alert rules and dashboard use is exported", "[operation][metrics][monitoring]")
{
    // name -> the shipped files that use it
    std::map<std::string, std::set<std::string>> used;
    for (const char* file : {"monitoring/prometheus/orderpay-alerts.yml", "monitoring/grafana/orderpay.json"}) {
        const std::string text = readFile(sourceDir() + "/" + file);
        INFO(file);
        REQUIRE_FALSE(text.empty());
        const auto names = metricNamesIn(text);
        CHECK(names.size() >= 5);  // the extraction itself works
        for (const auto& n : names) used[n].insert(file);
    }

    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    // Something in every series that exists only once it happened: requests
    // (and their latencies) on several routes, orders and payments by status.
    const auto orderId = c.createOrder(orderJson("monitoring@example.com"));
    c.waitForOrderStatus(orderId, "awaiting_payment");
    const auto paymentId = c.createPayment(paymentJson(orderId, 2500));
    c.waitForPaymentStatus(paymentId, "succeeded");
    c.get("/health/ready");
    c.get("/orders/ord_01JDQ8M4Z3X7K2N9P5R6S8T0VW");  // a 404

    // Series that come from a look at the broker or the store may trail the
    // requests by a second or two: scrape until all are there, or the
    // deadline passes (then each missing one is reported below).
    std::string body;
    eventually(
        [&] {
            const auto r = c.get("/metrics");
            if (r.status != 200) return false;
            body = r.body;
            const Exported exported(body);
            for (const auto& [name, files] : used)
                if (!otherStoresMetric(name) && !exported.has(name)) return false;
            return true;
        },
        15s, 200ms);
    REQUIRE_FALSE(body.empty());

    const Exported exported(body);
    int checked = 0;
    int missing = 0;
    for (const auto& [name, files] : used) {
        if (otherStoresMetric(name)) continue;
        std::string where;
        for (const auto& f : files) where += (where.empty() ? "" : ", ") + f;
        INFO(name << " is used by " << where);
        CHECK(exported.has(name));
        missing += exported.has(name) ? 0 : 1;
        ++checked;
    }
    CHECK(checked >= 20);
    INFO("/metrics:\n" << body);
    CHECK(missing == 0);
}
