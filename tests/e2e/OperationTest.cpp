// Operating the daemon: command line, configuration checks, signals, health
// and metrics.
#include "Daemon.h"
#include "HttpClient.h"
#include "NotifySocket.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include <sqlite3.h>
#include <unistd.h>

using namespace e2e;
using test_support::NotifySocket;

namespace {

std::string changelogVersion()
{
    std::ifstream in(sourceDir() + "/debian/changelog");
    std::string first;
    std::getline(in, first);
    std::smatch m;
    if (std::regex_search(first, m, std::regex(R"(\(([0-9]+\.[0-9]+\.[0-9]+))"))) return m[1];
    return {};
}

RunResult checkConfig(const std::vector<std::string>& extra, const std::string& config = configPath())
{
    std::vector<std::string> args{"--config=" + config, "--check-config"};
    for (const auto& d : extra) {
        args.push_back("-D");
        args.push_back(d);
    }
    return runOrderpayd(args, 20s);
}

} // namespace

TEST_CASE("orderpayd --version prints the package version and exits 0", "[operation][cli]")
{
    auto r = runOrderpayd({"--version"});
    INFO(r.output);
    REQUIRE_FALSE(r.timedOut);
    CHECK(r.exitCode == 0);
    CHECK(std::regex_search(r.output, std::regex(R"(\d+\.\d+\.\d+)")));
    auto v = changelogVersion();
    REQUIRE(!v.empty());
    CHECK(r.output.find(v) != std::string::npos);
}

TEST_CASE("orderpayd --help describes the options and exits 0", "[operation][cli]")
{
    auto r = runOrderpayd({"--help"});
    INFO(r.output);
    REQUIRE_FALSE(r.timedOut);
    CHECK(r.exitCode == 0);
    CHECK(r.output.find("--config") != std::string::npos);
    CHECK(r.output.find("--check-config") != std::string::npos);
    CHECK(r.output.find("-D") != std::string::npos);
}

TEST_CASE("orderpayd --check-config accepts the shipped configuration", "[operation][config]")
{
    auto r = checkConfig({});
    INFO(r.output);
    REQUIRE_FALSE(r.timedOut);
    CHECK(r.exitCode == 0);
    // Also with the overrides the tests use.
    TempDir dir;
    auto r2 = checkConfig({"http.port=18080", "store.sqlite.path=" + dir.path() + "/x.db",
                           "orders.processing_ms=0", "http.read_timeout=500ms", "logging.target=console"});
    INFO(r2.output);
    CHECK(r2.exitCode == 0);
}

TEST_CASE("orderpayd --check-config reports unknown keys and bad values with the key and exits 1", "[operation][config]")
{
    struct Case { std::string define, key; };
    const std::vector<Case> cases = {
        {"nonsense.key=1", "nonsense.key"},
        {"http.port=notanumber", "http.port"},
        {"http.port=70000", "http.port"},
        {"http.read_timeout=forever", "http.read_timeout"},
        {"http.max_body_bytes=-1", "http.max_body_bytes"},
        {"broker.kind=kafka", "broker.kind"},
        {"orders.currency=euro", "orders.currency"},
        {"orders.processing_ms=-5", "orders.processing_ms"},
        {"http.allow_unauthenticated=maybe", "http.allow_unauthenticated"},
        {"logging.level=loud", "logging.level"},
    };
    for (const auto& tc : cases) {
        auto r = checkConfig({tc.define});
        INFO("-D " << tc.define << "\noutput: " << r.output);
        REQUIRE_FALSE(r.timedOut);
        CHECK(r.exitCode == 1);
        CHECK(r.output.find(tc.key) != std::string::npos);
    }
}

TEST_CASE("orderpayd --check-config names the file and the key of a bad line in a config file", "[operation][config]")
{
    TempDir dir;
    auto shipped = readFile(configPath());
    REQUIRE(!shipped.empty());
    auto path = dir.write("broken.properties", shipped + "\nhttp.prot = 1212\n", 0644);
    auto r = checkConfig({}, path);
    INFO(r.output);
    REQUIRE_FALSE(r.timedOut);
    CHECK(r.exitCode == 1);
    CHECK(r.output.find("http.prot") != std::string::npos);
    CHECK(r.output.find("broken.properties") != std::string::npos);

    // A config file that does not exist.
    auto missing = checkConfig({}, dir.path() + "/missing.properties");
    INFO(missing.output);
    CHECK(missing.exitCode != 0);
    CHECK(missing.output.find("missing.properties") != std::string::npos);
}

TEST_CASE("A normal start with a bad configuration exits 78", "[operation][config]")
{
    for (const std::string& define : {std::string("http.port=notanumber"), std::string("nonsense.key=1")}) {
        INFO("-D " << define);
        Daemon d({define}, Daemon::Wait::No);
        auto code = d.waitExit(15s);
        INFO("log: " << d.logTail());
        REQUIRE(code.has_value());
        CHECK(*code == 78);
        CHECK(d.log().find(define.substr(0, define.find('='))) != std::string::npos);
    }
}

TEST_CASE("The running daemon is named orderpayd", "[operation]")
{
    // ps, top, pgrep and journald's _COMM see this name; a re-exec through
    // /proc/self/exe (as an earlier main() did) would make it "exe".
    Daemon d({"orders.processing_ms=0"});
    std::ifstream comm("/proc/" + std::to_string(d.pid()) + "/comm");
    std::string name;
    std::getline(comm, name);
    CHECK(name == "orderpayd");
}

TEST_CASE("SIGTERM and SIGINT make an idle daemon exit 0", "[operation][signals]")
{
    {
        Daemon d({"orders.processing_ms=0"});
        HttpClient(d.port()).createOrder(orderJson("term@example.com"));
        CHECK(d.terminate(15s) == 0);
    }
    {
        Daemon d({"orders.processing_ms=0"});
        d.signal(SIGINT);
        auto code = d.waitExit(15s);
        REQUIRE(code.has_value());
        CHECK(*code == 0);
    }
}

TEST_CASE("SIGTERM while an order is processing exits 0 and the order completes after restart", "[operation][signals]")
{
    Daemon d({"orders.processing_ms=3000"});
    HttpClient c(d.port());
    auto id = c.createOrder(orderJson("sigterm@example.com"));
    auto queued = c.createOrder(orderJson("sigterm-queued@example.com"));
    // Wait until it is between steps.
    bool mid = eventually(
        [&] {
            auto r = c.getOrder(id);
            return r.status == 200 && countEvents(events(r.obj()), "step_completed") >= 1;
        },
        10s);
    REQUIRE(mid);
    CHECK(d.terminate(20s) == 0);
    d.restart();
    for (const auto& o : {id, queued}) {
        INFO("order " << o);
        checkProcessedExactlyOnce(c.waitForOrderStatus(o, "awaiting_payment", 20s).obj());
    }
}

TEST_CASE("SIGHUP re-reads the token file without a restart", "[operation][signals][auth]")
{
    TempDir secrets;
    auto tokenFile = secrets.write("tokens", "old-token\n", 0600);
    Daemon d({"orders.processing_ms=0", "http.auth.token_file=" + tokenFile});
    HttpClient oldClient(d.port(), "old-token");
    HttpClient newClient(d.port(), "new-token");
    REQUIRE(oldClient.get("/orders").status == 200);
    REQUIRE(newClient.get("/orders").status == 401);
    auto pid = d.pid();

    secrets.write("tokens", "new-token\n", 0600);
    d.signal(SIGHUP);
    bool swapped = eventually([&] {
        try {
            return newClient.get("/orders").status == 200 && oldClient.get("/orders").status == 401;
        } catch (const std::exception&) {
            return false;
        }
    }, 10s, 50ms);
    INFO("log: " << d.logTail());
    if (!d.running())
        FAIL("orderpayd ended on SIGHUP with exit code " << d.waitExit(0ms).value_or(-1));
    CHECK(swapped);
    CHECK(d.pid() == pid);
    newClient.createOrder(orderJson("hup@example.com"));
}

TEST_CASE("Under systemd the daemon notifies READY, STATUS, WATCHDOG and STOPPING", "[operation][systemd]")
{
    TempDir sockDir;
    NotifySocket notify(sockDir.path() + "/notify.sock");
    Daemon d({"orders.processing_ms=0"}, Daemon::Wait::Ready,
             {"NOTIFY_SOCKET=" + sockDir.path() + "/notify.sock", "WATCHDOG_USEC=1000000"});
    CHECK(notify.waitFor("READY=1", 1, 5s));
    CHECK(notify.waitFor("STATUS=", 1, 5s, /*prefix=*/true));
    // WATCHDOG=1 every half of WATCHDOG_USEC (500 ms) while healthy.
    auto t0 = std::chrono::steady_clock::now();
    int before = notify.count("WATCHDOG=1");
    CHECK(notify.waitFor("WATCHDOG=1", before + 3, 4s));
    INFO("3 watchdog pings took "
         << std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - t0).count() << " ms");
    CHECK(std::chrono::steady_clock::now() - t0 < 3s);

    d.signal(SIGTERM);
    CHECK(notify.waitFor("STOPPING=1", 1, 10s));
    auto code = d.waitExit(20s);
    INFO("notifications: " << Catch::Detail::stringify(notify.lines));
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    CHECK(notify.indexOf("READY=1") >= 0);
    CHECK(notify.indexOf("READY=1") < notify.indexOf("STOPPING=1"));
}

TEST_CASE("GET /health/live and /health/ready report ok with their components", "[operation][health]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    auto live = c.get("/health/live");
    INFO(live.describe());
    REQUIRE(live.status == 200);
    CHECK(live.contentType().rfind("application/json", 0) == 0);
    CHECK(getString(live.obj(), "status").value_or("") == "ok");

    auto ready = c.get("/health/ready");
    INFO(ready.describe());
    REQUIRE(ready.status == 200);
    CHECK(ready.contentType().rfind("application/json", 0) == 0);
    auto o = ready.obj();
    CHECK(getString(o, "status").value_or("") == "ok");
    auto comps = getObject(o, "components");
    REQUIRE(comps);
    CHECK(getString(comps, "database").value_or("") == "ok");
    auto broker = getString(comps, "broker").value_or("<missing>");
    CHECK((broker == "ok" || broker == "connected"));
}

TEST_CASE("GET /metrics exposes request counters and queue depths in Prometheus text format", "[operation][metrics]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    auto id = c.createOrder(orderJson("metrics@example.com"));
    c.waitForOrderStatus(id, "awaiting_payment");
    c.get("/orders/ord_01JDQ8M4Z3X7K2N9P5R6S8T0VW"); // a 404 to count

    auto r = c.get("/metrics");
    INFO(r.describe());
    REQUIRE(r.status == 200);
    CHECK(r.contentType().rfind("text/plain", 0) == 0);
    const auto& m = r.body;
    CHECK(m.find("orderpay_http_requests_total") != std::string::npos);
    CHECK(m.find("# TYPE orderpay_http_requests_total counter") != std::string::npos);
    CHECK(m.find("orderpay_queue_depth") != std::string::npos);
    // The POST /orders that got a 202 is counted with a positive value.
    // (label values such as route="/orders/{id}" contain braces: match to the line's end)
    std::regex posted(R"(orderpay_http_requests_total\{[^\n]*status="202"[^\n]*\}\s+([0-9.e+]+))");
    std::smatch match;
    REQUIRE(std::regex_search(m, match, posted));
    CHECK(std::stod(match[1]) >= 1);
    CHECK(std::regex_search(m, std::regex(R"(orderpay_http_requests_total\{[^\n]*status="404"[^\n]*\}\s+[1-9])")));
    // Every sample line is "name{labels} value" or "name value".
    std::istringstream lines(m);
    std::string line;
    std::regex sample(R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})?\s+[-+0-9.eEInfNa]+(\s+-?\d+)?$)");
    int samples = 0;
    while (std::getline(lines, line)) {
        if (line.empty() || line[0] == '#') continue;
        INFO("line: " << line);
        CHECK(std::regex_match(line, sample));
        ++samples;
    }
    CHECK(samples > 0);
}

TEST_CASE("SIGHUP sends RELOADING=1 then READY=1", "[operation][systemd][signals]")
{
    TempDir sockDir;
    NotifySocket notify(sockDir.path() + "/notify.sock");
    Daemon d({"orders.processing_ms=0"}, Daemon::Wait::Ready, {"NOTIFY_SOCKET=" + sockDir.path() + "/notify.sock"});
    REQUIRE(notify.waitFor("READY=1", 1, 5s));
    d.signal(SIGHUP);
    CHECK(notify.waitFor("RELOADING=1", 1, 5s));
    CHECK(notify.waitFor("READY=1", 2, 5s));
    INFO("notifications: " << Catch::Detail::stringify(notify.lines));
    const auto reloading = notify.indexOf("RELOADING=1");
    REQUIRE(reloading >= 0);
    CHECK(std::count(notify.lines.begin() + reloading, notify.lines.end(), std::string("READY=1")) == 1);
    CHECK(d.running());
}

TEST_CASE("An upgrade migrates the database before READY=1, with systemd's start timeout extended meanwhile",
          "[operation][systemd][store][sqlite]")
{
    TempDir sockDir;
    NotifySocket notify(sockDir.path() + "/notify.sock");
    Daemon d({"orders.processing_ms=0"}, Daemon::Wait::Ready, {"NOTIFY_SOCKET=" + sockDir.path() + "/notify.sock"});
    REQUIRE(notify.waitFor("READY=1", 1, 5s));
    auto placed = HttpClient(d.port()).post("/orders", R"({"customer":"c","currency":"EUR",
        "items":[{"sku":"A","quantity":1,"unit_amount":100}]})");
    REQUIRE(placed.status == 202);
    REQUIRE(d.terminate() == 0);

    // The database as a version 2 daemon left it: with its step ledger
    // table, without what versions 3 to 10 added.
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(d.dbPath().c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
    const int rc = sqlite3_exec(db,
                                "ALTER TABLE messages DROP COLUMN holder; ALTER TABLE order_events DROP COLUMN instance; "
                                "ALTER TABLE orders DROP COLUMN step_due_at; DROP TABLE work_counters; "
                                "DROP TABLE status_counts; DROP TABLE webhook_attempts; DROP TABLE webhook_endpoints; "
                                "DROP TABLE webhook_outbox; "
                                "CREATE TABLE order_steps (order_id TEXT NOT NULL, step TEXT NOT NULL, "
                                "completed_at TEXT NOT NULL, PRIMARY KEY (order_id, step)) WITHOUT ROWID; "
                                "PRAGMA user_version = 2",
                                nullptr, nullptr, nullptr);
    sqlite3_close(db);
    REQUIRE(rc == SQLITE_OK);

    notify.drain();  // the first run's, to its STOPPING=1
    const std::size_t before = notify.lines.size();
    d.restart();
    REQUIRE(notify.waitFor("READY=1", 2, 10s));
    CHECK(d.log().find("from schema version 2 to 3") != std::string::npos);
    // Migrated: the order is still there, the table gone.
    CHECK(HttpClient(d.port()).get(placed.header("Location")).status == 200);
    REQUIRE(sqlite3_open_v2(d.dbPath().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    int tables = -1;
    sqlite3_exec(
        db, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'order_steps'",
        [](void* out, int, char** values, char**) {
            *static_cast<int*>(out) = std::atoi(values[0]);
            return 0;
        },
        &tables, nullptr);
    sqlite3_close(db);
    CHECK(tables == 0);

    // This run's notifications, to its STOPPING=1: the first asks for more
    // time to start, and none does once READY=1 is sent.
    REQUIRE(d.terminate() == 0);
    notify.drain();
    INFO("notifications: " << Catch::Detail::stringify(notify.lines));
    const std::vector<std::string> run(notify.lines.begin() + static_cast<std::ptrdiff_t>(before), notify.lines.end());
    REQUIRE_FALSE(run.empty());
    CHECK(run.front().rfind("EXTEND_TIMEOUT_USEC=", 0) == 0);
    const auto ready = std::find(run.begin(), run.end(), std::string("READY=1"));
    REQUIRE(ready != run.end());
    REQUIRE(std::find(ready, run.end(), std::string("STOPPING=1")) != run.end());
    CHECK(std::none_of(ready, run.end(), [](const std::string& l) { return l.rfind("EXTEND_TIMEOUT_USEC=", 0) == 0; }));
}

namespace {

// Freezes the daemon's thread `thread` and checks that the watchdog stops
// being fed, saying why (`why`); then thaws it and checks the feeding
// resumes. With `liveAnswers`, /health/live answers meanwhile (a frozen
// event loop would leave the connections dealt to it unanswered).
void checkWatchdogStopsFor(const std::string& thread, const std::string& why, std::vector<std::string> defines,
                           bool liveAnswers)
{
    TempDir sockDir;
    NotifySocket notify(sockDir.path() + "/notify.sock");
    Daemon d(std::move(defines), Daemon::Wait::Ready,
             {"NOTIFY_SOCKET=" + sockDir.path() + "/notify.sock", "WATCHDOG_USEC=1000000"});
    HttpClient c(d.port());
    REQUIRE(notify.waitFor("WATCHDOG=1", 2, 5s));  // healthy: fed every 500 ms
    int pings = 0;
    {
        FrozenThread wedged(d.pid(), thread);
        // Silent past the stall limit (3 s): no more pings.
        REQUIRE(eventually([&] { return d.log().find("not feeding the systemd watchdog") != std::string::npos; }, 10s,
                           100ms));
        notify.waitFor("(drain what was sent before)", 1, 1s);
        pings = notify.count("WATCHDOG=1");
        CHECK_FALSE(notify.waitFor("WATCHDOG=1", pings + 1, 3s));
        INFO("log: " << d.logTail());
        CHECK(d.log().find(why) != std::string::npos);
        // HTTP still answers: one thread is stuck, not the process.
        if (liveAnswers) CHECK(c.get("/health/live").status == 200);
    }
    // Thawed, it goes on, and so does the feeding.
    CHECK(notify.waitFor("WATCHDOG=1", pings + 1, 5s));
    CHECK(eventually([&] { return d.log().find("healthy again") != std::string::npos; }, 5s, 100ms));
}

}  // namespace

TEST_CASE("A wedged worker stops the watchdog feeding", "[operation][systemd][watchdog]")
{
    checkWatchdogStopsFor("orders-1", "orders-1 has made no progress", {"orders.processing_ms=0"}, true);
}

TEST_CASE("A wedged HTTP event loop stops the watchdog feeding", "[operation][systemd][watchdog]")
{
    checkWatchdogStopsFor("http-1", "HTTP event loop http-1 has not gone round",
                          {"orders.processing_ms=0", "http.max_threads=2"}, false);
}
