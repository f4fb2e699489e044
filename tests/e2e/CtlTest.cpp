// orderpayctl against a real orderpayd: every command as a table and as
// --json, and every exit status (0 done, 1 the API answered an error,
// 2 usage, 3 unreachable).
#include "Daemon.h"
#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

using namespace e2e;

namespace {

struct CtlResult {
    int code = -1; // exit status, 128+signal, -1 if it had to be killed
    std::string out;
    std::string err;

    std::string describe() const
    {
        return "exit " + std::to_string(code) + "\n--- stdout:\n" + out + "--- stderr:\n" + err;
    }
    // stdout as JSON; FAILs if it is not.
    Poco::Dynamic::Var json() const
    {
        INFO(describe());
        try {
            return parseJson(out);
        } catch (const std::exception& e) {
            FAIL("stdout is not JSON: " << e.what());
        }
        return {};
    }
    Poco::JSON::Object::Ptr obj() const
    {
        auto v = json();
        INFO(describe());
        REQUIRE(v.type() == typeid(Poco::JSON::Object::Ptr));
        return v.extract<Poco::JSON::Object::Ptr>();
    }
};

void check(int rc, const char* what)
{
    if (rc != 0) throw std::runtime_error(std::string(what) + ": " + std::strerror(rc == -1 ? errno : rc));
}

// Runs orderpayctl with `args`, `input` on its stdin (a pipe, or with
// `terminal` a pseudo-terminal, so that it asks before bulk changes), and
// collects stdout, stderr and the exit status. Killed after `timeout`.
CtlResult runCtl(const std::vector<std::string>& args, const std::string& input = {}, bool terminal = false,
                 Millis timeout = 30s)
{
    int out[2], err[2];
    check(::pipe2(out, O_CLOEXEC), "pipe2");
    check(::pipe2(err, O_CLOEXEC), "pipe2");
    int childStdin = -1;
    int master = -1;
    if (terminal) {
        master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0) throw std::runtime_error(std::string("posix_openpt: ") + std::strerror(errno));
        check(::grantpt(master), "grantpt");
        check(::unlockpt(master), "unlockpt");
        childStdin = ::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (childStdin < 0) throw std::runtime_error(std::string("open pts: ") + std::strerror(errno));
        // Typed ahead: the terminal holds the line until it is read.
        if (!input.empty() && ::write(master, input.data(), input.size()) != static_cast<ssize_t>(input.size()))
            throw std::runtime_error("write to the pseudo-terminal failed");
    } else {
        int in[2];
        check(::pipe2(in, O_CLOEXEC), "pipe2");
        // Small enough for the pipe's buffer: written whole before the start.
        if (!input.empty() && ::write(in[1], input.data(), input.size()) != static_cast<ssize_t>(input.size()))
            throw std::runtime_error("write to stdin pipe failed");
        ::close(in[1]);
        childStdin = in[0];
    }

    posix_spawn_file_actions_t actions;
    check(::posix_spawn_file_actions_init(&actions), "posix_spawn_file_actions_init");
    ::posix_spawn_file_actions_adddup2(&actions, childStdin, 0);
    ::posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    ::posix_spawn_file_actions_adddup2(&actions, err[1], 2);
    const std::string path = ORDERPAYCTL_PATH;
    std::vector<std::string> argv{path};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    pid_t pid = -1;
    const int spawned = ::posix_spawn(&pid, path.c_str(), &actions, nullptr, cargv.data(), environ);
    ::posix_spawn_file_actions_destroy(&actions);
    ::close(childStdin);
    ::close(out[1]);
    ::close(err[1]);
    if (spawned != 0) {
        ::close(out[0]);
        ::close(err[0]);
        if (master >= 0) ::close(master);
        throw std::runtime_error("cannot run " + path + ": " + std::strerror(spawned));
    }

    CtlResult result;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    std::string* sinks[2] = {&result.out, &result.err};
    int open = 2;
    bool killed = false;
    while (open > 0) {
        const auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now()).count();
        if (left <= 0) {
            ::kill(pid, SIGKILL);
            killed = true;
            break;
        }
        const int n = ::poll(fds, 2, static_cast<int>(left));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || fds[i].revents == 0) continue;
            char buf[4096];
            const ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
            if (got > 0) {
                sinks[i]->append(buf, static_cast<std::size_t>(got));
            } else if (got == 0 || errno != EINTR) {
                ::close(fds[i].fd);
                fds[i].fd = -1;
                --open;
            }
        }
    }
    for (auto& f : fds)
        if (f.fd >= 0) ::close(f.fd);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (master >= 0) ::close(master);
    if (killed)
        result.code = -1;
    else if (WIFEXITED(status))
        result.code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        result.code = 128 + WTERMSIG(status);
    return result;
}

// orderpayctl pointed at one daemon: --url, and --config of an empty file so
// that a real /etc/orderpay/orderpay.properties on the test machine is never
// read.
class Ctl {
public:
    explicit Ctl(const Daemon& d, std::vector<std::string> extra = {})
        : config_(files_.write("empty.properties", "# nothing: the command line says it all\n")),
          url_("http://127.0.0.1:" + std::to_string(d.port())), extra_(std::move(extra))
    {
    }
    CtlResult operator()(const std::vector<std::string>& args, const std::string& input = {},
                         bool terminal = false) const
    {
        std::vector<std::string> all{"--config", config_, "--url", url_};
        all.insert(all.end(), extra_.begin(), extra_.end());
        all.insert(all.end(), args.begin(), args.end());
        return runCtl(all, input, terminal);
    }
    const std::string& url() const { return url_; }

private:
    TempDir files_;
    std::string config_;
    std::string url_;
    std::vector<std::string> extra_;
};

bool contains(const std::string& haystack, const std::string& needle)
{
    return haystack.find(needle) != std::string::npos;
}

// The line of `table` that mentions `needle` (empty if none).
std::string lineWith(const std::string& table, const std::string& needle)
{
    std::istringstream lines(table);
    std::string line;
    while (std::getline(lines, line))
        if (contains(line, needle)) return line;
    return {};
}

void requireExit(const CtlResult& r, int code)
{
    INFO(r.describe());
    REQUIRE(r.code == code);
}

// What the status of an admin route is with no token: 404 while the daemon
// has none of them.
bool hasAdminRoutes(const Daemon& d)
{
    return HttpClient(d.port()).get("/status").status != 404;
}

} // namespace

TEST_CASE("orderpayctl --help and --version exit 0, a wrong command line exits 2 before any request", "[ctl]")
{
    auto help = runCtl({"--help"});
    requireExit(help, 0);
    CHECK(contains(help.out, "Usage: orderpayctl"));
    for (const char* command : {"status", "orders", "order ID", "cancel ID", "dead-letters", "replay", "webhooks"})
        CHECK(contains(help.out, command));
    CHECK(help.err.empty());

    auto version = runCtl({"--version"});
    requireExit(version, 0);
    CHECK(std::regex_match(version.out, std::regex("orderpayctl [0-9]+\\.[0-9]+\\.[0-9]+\n")));

    // Nothing listens on this port: a usage error must be found before
    // connecting (2, not 3).
    TempDir dir;
    const auto config = dir.write("empty.properties", "");
    const std::string url = "http://127.0.0.1:" + std::to_string(freePort());
    const std::vector<std::vector<std::string>> wrong = {
        {},
        {"--json"},
        {"frobnicate"},
        {"--bogus", "status"},
        {"order"},
        {"cancel"},
        {"order", "ord_a", "ord_b"},
        {"orders", "--limit", "0"},
        {"orders", "--limit", "201"},
        {"orders", "--limit", "ten"},
        {"orders", "--limit"},
        {"orders", "--status", "lost"},
        {"orders", "--bogus"},
        {"orders", "--json"}, // a global option after the command
        {"dead-letters", "--limit", "-1"},
        {"replay"},
        {"replay", "dl_1", "--dry-run"},
        {"replay", "--all", "dl_1"},
        {"webhooks"},
        {"webhooks", "frobnicate"},
        {"webhooks", "add"},
        {"webhooks", "remove"},
        {"webhooks", "list", "--events", "order.paid"},
        {"webhooks", "list", "extra"},
        {"webhooks", "rotate"},
        {"webhooks", "test"},
        {"webhooks", "deliveries"},
        {"webhooks", "remove", "we_a", "we_b"},
        {"webhooks", "add", "https://example.com/hook", "--events", "order.shipped"},
        {"webhooks", "add", "https://example.com/hook", "--events", ","},
        {"webhooks", "test", "we_a", "--limit", "5"},
        {"webhooks", "deliveries", "we_a", "--limit", "0"},
        {"webhooks", "deliveries", "we_a", "--limit", "101"}, // the route's bound is 100
        {"webhooks", "deliveries", "we_a", "--events", "order.paid"},
    };
    for (const auto& args : wrong) {
        std::vector<std::string> all{"--config", config, "--url", url};
        all.insert(all.end(), args.begin(), args.end());
        auto r = runCtl(all);
        INFO("orderpayctl " << Catch::Detail::stringify(args));
        requireExit(r, 2);
        CHECK(r.out.empty());
        CHECK(contains(r.err, "orderpayctl: "));
        CHECK(contains(r.err, "Usage: orderpayctl"));
    }
    auto unknown = runCtl({"--config", config, "--url", url, "frobnicate"});
    CHECK(contains(unknown.err, "unknown command 'frobnicate'"));
    auto missing = runCtl({"--config", config, "--url", url, "order"});
    CHECK(contains(missing.err, "needs an order ID"));
    auto misplaced = runCtl({"--config", config, "--url", url, "orders", "--json"});
    CHECK(contains(misplaced.err, "--json is a global option: put it before the command"));

    // A file named on the command line that cannot be read.
    auto noConfig = runCtl({"--config", dir.path() + "/absent.properties", "status"});
    requireExit(noConfig, 2);
    CHECK(contains(noConfig.err, dir.path() + "/absent.properties"));
    auto noToken = runCtl({"--config", config, "--url", url, "--token-file", dir.path() + "/absent", "status"});
    requireExit(noToken, 2);
    CHECK(contains(noToken.err, "--token-file " + dir.path() + "/absent"));
    auto badUrl = runCtl({"--config", config, "--url", "https://127.0.0.1:1", "status"});
    requireExit(badUrl, 2);
}

TEST_CASE("orderpayctl exits 3 naming the URL when no daemon listens", "[ctl]")
{
    TempDir dir;
    const auto config = dir.write("empty.properties", "");
    const std::string url = "http://127.0.0.1:" + std::to_string(freePort());
    for (const std::vector<std::string>& args : {std::vector<std::string>{"status"},
                                                 {"orders"},
                                                 {"--json", "order", "ord_x"},
                                                 {"replay", "--all", "--dry-run"},
                                                 {"webhooks", "list"}}) {
        std::vector<std::string> all{"--config", config, "--url", url};
        all.insert(all.end(), args.begin(), args.end());
        auto r = runCtl(all);
        INFO("orderpayctl " << Catch::Detail::stringify(args));
        requireExit(r, 3);
        CHECK(r.out.empty());
        CHECK(contains(r.err, url));
    }

    // The address from the configuration when there is no --url; a daemon
    // that listens on every address is reached on loopback.
    const auto port = freePort();
    const auto props =
        dir.write("orderpay.properties", "http.host = 0.0.0.0\nhttp.port = " + std::to_string(port) + "\n");
    auto r = runCtl({"--config", props, "orders"});
    requireExit(r, 3);
    CHECK(contains(r.err, "http://127.0.0.1:" + std::to_string(port)));
}

TEST_CASE("orderpayctl orders, order and cancel show the daemon's orders as tables and JSON", "[ctl]")
{
    Daemon d({"orders.processing_ms=300"});
    HttpClient c(d.port());
    Ctl ctl(d);

    const auto paid = c.createOrder(orderJson("paid@example.com"));
    const auto other = c.createOrder(orderJson("other@example.com", {{"PEN-1", 3, 199}}, "EUR", {{"channel", "web"}}));
    c.waitForOrderStatus(paid, "awaiting_payment");
    const auto payment = c.createPayment(paymentJson(paid, 2500, "EUR", "card", "psp-ctl-1"));
    c.waitForOrderStatus(paid, "paid");
    c.waitForOrderStatus(other, "awaiting_payment");

    SECTION("orders: a table of the newest orders, filtered by status, limited")
    {
        auto all = ctl({"orders"});
        requireExit(all, 0);
        INFO(all.out);
        CHECK(contains(all.out, "ID"));
        CHECK(contains(all.out, "STATUS"));
        CHECK(contains(lineWith(all.out, paid), "paid"));
        CHECK(contains(lineWith(all.out, paid), "25.00 EUR"));
        CHECK(contains(lineWith(all.out, paid), "paid@example.com"));
        CHECK(contains(lineWith(all.out, other), "awaiting_payment"));
        CHECK(contains(lineWith(all.out, other), "5.97 EUR"));
        // newest first
        CHECK(all.out.find(other) < all.out.find(paid));

        auto onlyPaid = ctl({"orders", "--status", "paid"});
        requireExit(onlyPaid, 0);
        CHECK(contains(onlyPaid.out, paid));
        CHECK_FALSE(contains(onlyPaid.out, other));
        auto none = ctl({"orders", "--status", "cancelled"});
        requireExit(none, 0);
        CHECK(contains(none.out, "No cancelled orders."));

        auto one = ctl({"--json", "orders", "--limit", "1"});
        requireExit(one, 0);
        auto doc = one.obj();
        auto orders = getArray(doc, "orders");
        REQUIRE(orders);
        REQUIRE(orders->size() == 1);
        CHECK(getString(arrayObject(orders, 0), "id").value_or("") == other);
        CHECK_FALSE(isNull(doc, "next"));
        auto limitedTable = ctl({"orders", "--limit=1"});
        requireExit(limitedTable, 0);
        CHECK(contains(limitedTable.out, "there are more"));
    }

    SECTION("order ID: the order, its payments and a timeline with the time between steps")
    {
        auto r = ctl({"order", paid});
        requireExit(r, 0);
        INFO(r.out);
        CHECK(contains(r.out, paid));
        CHECK(contains(lineWith(r.out, "Status:"), "paid"));
        CHECK(contains(lineWith(r.out, "Customer:"), "paid@example.com"));
        CHECK(contains(lineWith(r.out, "Total:"), "25.00 EUR"));
        CHECK(contains(lineWith(r.out, "BOOK-42"), "12.50 EUR"));
        CHECK(contains(lineWith(r.out, payment), "succeeded"));
        CHECK(contains(lineWith(r.out, payment), "psp-ctl-1"));
        CHECK(contains(r.out, "Timeline"));
        for (const char* step : {"validate", "reserve_stock", "prepare_invoice"})
            CHECK(contains(r.out, std::string("step ") + step + " completed"));
        CHECK(contains(r.out, "status awaiting_payment"));
        CHECK(contains(r.out, "payment " + payment + " succeeded"));
        // The steps wait in timers of about 100 ms each: the gaps show.
        CHECK(std::regex_search(lineWith(r.out, "step reserve_stock started"), std::regex(R"(\+0\.\d{3}s)")));

        auto withMeta = ctl({"order", other});
        requireExit(withMeta, 0);
        CHECK(contains(lineWith(withMeta.out, "Metadata:"), "channel=web"));
        CHECK(contains(withMeta.out, "(none)")); // no payments

        auto json = ctl({"--json", "order", paid});
        requireExit(json, 0);
        auto o = json.obj();
        auto viaHttp = c.getOrder(paid).obj();
        CHECK(getString(o, "id").value_or("") == paid);
        CHECK(getString(o, "status").value_or("") == "paid");
        CHECK(stringify(o) == stringify(viaHttp));
    }

    SECTION("an unknown order and a paid order's cancel are the API's problems: exit 1 with title and detail")
    {
        auto missing = ctl({"order", "ord_doesnotexist"});
        requireExit(missing, 1);
        CHECK(missing.out.empty());
        auto problem = c.getOrder("ord_doesnotexist");
        requireProblem(problem, 404);
        const auto title = getString(problem.obj(), "title").value_or("?");
        const auto detail = getString(problem.obj(), "detail").value_or("?");
        CHECK(contains(missing.err, "orderpayctl: " + title + ": " + detail));
        requireExit(ctl({"--json", "order", "ord_doesnotexist"}), 1);

        auto cancelPaid = ctl({"cancel", paid});
        requireExit(cancelPaid, 1);
        CHECK(contains(cancelPaid.err, "orderpayctl: The request conflicts with the order's state: "));
        CHECK(c.getOrder(paid).status == 200);
        CHECK(getString(c.getOrder(paid).obj(), "status").value_or("") == "paid");
    }

    SECTION("cancel ID cancels an order awaiting payment")
    {
        auto r = ctl({"cancel", other});
        requireExit(r, 0);
        CHECK(contains(r.out, "Cancelled " + other));
        CHECK(getString(c.getOrder(other).obj(), "status").value_or("") == "cancelled");
        auto again = ctl({"--json", "cancel", other});
        requireExit(again, 1);
        CHECK(again.out.empty());
    }
}

TEST_CASE("orderpayctl cancel of a queued order works and of a processing one exits 1 with the 409", "[ctl]")
{
    // One order in processing at a time, for a minute: the next ones wait.
    Daemon d({"orders.processing_ms=60000", "orders.concurrency=1"});
    HttpClient c(d.port());
    Ctl ctl(d);
    const auto processing = c.createOrder(orderJson("first@example.com"));
    c.waitForOrderStatus(processing, "processing");
    const auto queued = c.createOrder(orderJson("second@example.com"));
    const auto queued2 = c.createOrder(orderJson("third@example.com"));

    auto busy = ctl({"cancel", processing});
    requireExit(busy, 1);
    CHECK(busy.out.empty());
    CHECK(contains(busy.err, "orderpayctl: The request conflicts with the order's state: "));
    CHECK(getString(c.getOrder(processing).obj(), "status").value_or("") == "processing");

    auto table = ctl({"cancel", queued});
    requireExit(table, 0);
    CHECK(contains(table.out, "Cancelled " + queued + " (status cancelled)"));

    auto json = ctl({"--json", "cancel", queued2});
    requireExit(json, 0);
    auto o = json.obj();
    CHECK(getString(o, "id").value_or("") == queued2);
    CHECK(getString(o, "status").value_or("") == "cancelled");
    CHECK(getString(o, "reason").value_or("") == "cancelled by request");
}

TEST_CASE("orderpayctl status shows health, queues, orders by status, rates and the instance", "[ctl][admin]")
{
    Daemon d({"orders.processing_ms=60000", "orders.concurrency=1", "instance.name=ctl-status-1"});
    HttpClient c(d.port());
    Ctl ctl(d);
    if (!hasAdminRoutes(d)) FAIL("this orderpayd has no GET /status yet");
    const auto first = c.createOrder(orderJson("first@example.com"));
    c.waitForOrderStatus(first, "processing");
    c.createOrder(orderJson("second@example.com"));

    auto r = ctl({"status"});
    requireExit(r, 0);
    INFO(r.out);
    CHECK(contains(r.out, "ctl-status-1")); // which instance answered
    CHECK(contains(r.out, ctl.url()));
    CHECK(contains(lineWith(r.out, "Health:"), "ok"));
    CHECK(contains(lineWith(r.out, "Orders:"), "queued 1"));
    CHECK(contains(lineWith(r.out, "Orders:"), "processing 1"));
    CHECK(contains(lineWith(r.out, "Orders:"), "paid 0"));
    CHECK(contains(r.out, "Rates:"));
    const auto header = lineWith(r.out, "QUEUE");
    for (const char* column : {"READY", "IN-FLIGHT", "DELAYED", "DEAD", "OLDEST"}) CHECK(contains(header, column));
    for (const char* queue : {"orders", "order-steps", "payments"})
        CHECK(std::regex_search(r.out, std::regex(std::string("\n") + queue + " +[0-9]")));

    auto json = ctl({"--json", "status"});
    requireExit(json, 0);
    auto s = json.obj();
    CHECK(getString(s, "instance").value_or("") == "ctl-status-1");
    CHECK(getString(getObject(s, "health"), "status").value_or("") == "ok");
    CHECK(getInt(getObject(s, "orders"), "queued").value_or(-1) == 1);
    CHECK(getInt(getObject(s, "orders"), "processing").value_or(-1) == 1);
    REQUIRE(getObject(s, "queues"));
    CHECK(getObject(getObject(s, "queues"), "orders"));
}

TEST_CASE("orderpayctl sends the admin token: with the client token status exits 1 with the 403", "[ctl][auth][admin]")
{
    TempDir secrets;
    const auto client = secrets.write("client-tokens", "client-token\n", 0600);
    const auto admin = secrets.write("admin-tokens", "# the operators' token\n\n  admin-token  \nsecond-admin\n", 0600);
    Daemon d({"orders.processing_ms=0", "http.auth.token_file=" + client, "http.auth.admin_token_file=" + admin});
    HttpClient c(d.port(), "client-token");
    const auto id = c.createOrder(orderJson("auth@example.com"));
    Ctl plain(d);
    Ctl asAdmin(d, {"--token-file", admin});
    Ctl asClient(d, {"--token-file", client});

    requireExit(asAdmin({"status"}), 0);
    requireExit(asAdmin({"order", id}), 0); // an admin token opens the client routes
    requireExit(asClient({"order", id}), 0);

    auto forbidden = asClient({"status"});
    requireExit(forbidden, 1);
    auto problem = c.get("/status");
    requireProblem(problem, 403);
    CHECK(contains(forbidden.err, "orderpayctl: " + getString(problem.obj(), "title").value_or("?")));
    CHECK(contains(forbidden.err, client)); // which token was sent

    auto anonymous = plain({"orders"});
    requireExit(anonymous, 1);
    CHECK(contains(anonymous.err, "Authentication required"));
    CHECK(contains(anonymous.err, "no token was sent"));

    // From the daemon's own configuration: its address and its admin token.
    const auto props =
        secrets.write("orderpay.properties", "http.host = 0.0.0.0\nhttp.port = " + std::to_string(d.port()) +
                                                 "\nhttp.auth.token_file = " + client +
                                                 "\nhttp.auth.admin_token_file = " + admin + "\n");
    auto fromConfig = runCtl({"--config", props, "--json", "status"});
    requireExit(fromConfig, 0);
    CHECK(getObject(fromConfig.obj(), "queues"));

    // An admin token file that cannot be read: the client token still opens
    // the order commands, and the refusal of status says why.
    const auto partial = secrets.write(
        "partial.properties", "http.port = " + std::to_string(d.port()) + "\nhttp.auth.token_file = " + client +
                                  "\nhttp.auth.admin_token_file = " + secrets.path() + "/absent\n");
    requireExit(runCtl({"--config", partial, "order", id}), 0);
    auto degraded = runCtl({"--config", partial, "status"});
    requireExit(degraded, 1);
    CHECK(contains(degraded.err, secrets.path() + "/absent"));
}

TEST_CASE("orderpayctl dead-letters lists a dead letter and replay puts it back to work",
          "[ctl][admin][deadletter][sqlite]")
{
    // Two orders dead-lettered as in CrashTest: both timers cut short twice
    // (what SIGKILL mid-delivery leaves), then a start with retry.max_attempts=2.
    Daemon d({"orders.processing_ms=3000", "retry.max_attempts=2", "retry.backoff_ms=100"});
    HttpClient c(d.port());
    Ctl ctl(d);
    if (!hasAdminRoutes(d)) FAIL("this orderpayd has no admin routes (/status, /dead-letters) yet");
    const std::vector<std::string> ids = {c.createOrder(orderJson("poison1@example.com")),
                                          c.createOrder(orderJson("poison2@example.com"))};
    for (const auto& id : ids) {
        REQUIRE(eventually(
            [&] {
                auto r = c.getOrder(id);
                return r.status == 200 && countEvents(events(r.obj()), "step_started") == 1;
            },
            15s));
    }
    d.kill();
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(d.dbPath().c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
    const std::string timers =
        "queue = 'order-steps' AND (body LIKE '%" + ids[0] + "%' OR body LIKE '%" + ids[1] + "%')";
    const std::string sql =
        usingRabbitMq()
            ? "INSERT INTO deliveries (message_id, attempts, last_at) SELECT id, 2, 0 FROM messages WHERE " + timers
            : "UPDATE messages SET state = 'leased', attempts = 2, lease = 2 WHERE " + timers;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    const int changed = sqlite3_changes(db);
    sqlite3_close(db);
    REQUIRE(rc == SQLITE_OK);
    REQUIRE(changed == 2);
    d.restart();
    for (const auto& id : ids) c.waitForOrderStatus(id, "failed", 20s);

    // Both listed, as a table and as JSON.
    std::map<std::string, std::string> deadLetterOf; // order id -> dead letter id
    REQUIRE(eventually(
        [&] {
            auto r = ctl({"--json", "dead-letters"});
            if (r.code != 0) return false;
            auto list = getArray(r.obj(), "dead_letters");
            deadLetterOf.clear();
            for (std::size_t i = 0; list && i < list->size(); ++i) {
                auto dl = arrayObject(list, i);
                deadLetterOf[getString(dl, "order_id").value_or("")] = getString(dl, "id").value_or("");
            }
            return deadLetterOf.count(ids[0]) && deadLetterOf.count(ids[1]);
        },
        10s, 100ms));
    auto table = ctl({"dead-letters"});
    requireExit(table, 0);
    INFO(table.out);
    for (const auto& id : ids) {
        const auto line = lineWith(table.out, id);
        CHECK(contains(line, deadLetterOf[id]));
        CHECK(contains(line, "order-steps"));
    }
    CHECK(contains(lineWith(table.out, "QUEUE"), "REASON"));
    auto payments = ctl({"dead-letters", "--queue", "payments"});
    requireExit(payments, 0);
    CHECK(contains(payments.out, "No dead letters in payments."));

    // Counting changes nothing.
    auto dry = ctl({"replay", "--all", "--dry-run"});
    requireExit(dry, 0);
    CHECK(contains(dry.out, "Matched 2 dead letters (dry run: nothing replayed)"));
    auto dryJson = ctl({"--json", "replay", "--all", "--queue", "order-steps", "--dry-run"});
    requireExit(dryJson, 0);
    CHECK(getInt(dryJson.obj(), "matched").value_or(-1) == 2);
    CHECK(getInt(dryJson.obj(), "replayed").value_or(-1) == 0);

    // At a terminal a bulk replay asks first; "n" keeps them dead.
    auto declined = ctl({"replay", "--all"}, "n\n", /*terminal=*/true);
    requireExit(declined, 0);
    CHECK(contains(declined.err, "Replay 2 dead letters? [y/N]"));
    CHECK(contains(declined.err, "Nothing replayed."));
    for (const auto& id : ids) CHECK(getString(c.getOrder(id).obj(), "status").value_or("") == "failed");

    // One by its id...
    auto one = ctl({"replay", deadLetterOf[ids[0]]});
    requireExit(one, 0);
    CHECK(contains(one.out, "Replayed " + deadLetterOf[ids[0]]));
    CHECK(contains(one.out, ids[0]));
    // ...which then is gone: replaying it again is the API's 404.
    auto again = ctl({"replay", deadLetterOf[ids[0]]});
    requireExit(again, 1);
    CHECK(contains(again.err, "orderpayctl: "));

    // ...and the rest in bulk, chosen by a piece of its reason: stdin is no
    // terminal here, so no question.
    const auto reasons = getArray(ctl({"--json", "dead-letters"}).obj(), "dead_letters");
    REQUIRE(reasons);
    REQUIRE(reasons->size() == 1);
    const auto reason = getString(arrayObject(reasons, 0), "reason").value_or("");
    REQUIRE(reason.size() >= 8);
    auto rest = ctl({"replay", "--all", "--queue", "order-steps", "--reason-contains", reason.substr(2, 6)});
    requireExit(rest, 0);
    CHECK(contains(rest.out, "Matched 1 dead letter, replayed 1."));
    CHECK_FALSE(contains(rest.err, "[y/N]"));

    for (const auto& id : ids) {
        INFO("order " << id);
        c.waitForOrderStatus(id, "awaiting_payment", 30s);
    }
    auto empty = ctl({"dead-letters"});
    requireExit(empty, 0);
    CHECK(contains(empty.out, "No dead letters."));
    auto emptyJson = ctl({"--json", "dead-letters"});
    requireExit(emptyJson, 0);
    CHECK(getArray(emptyJson.obj(), "dead_letters")->size() == 0);
}

TEST_CASE("orderpayctl webhooks lists, adds, rotates, tests and removes endpoints and shows their deliveries",
          "[ctl][admin][webhooks]")
{
    // http:// to loopback is refused without allow_private_networks; the
    // endpoint is a port nothing listens on, so each attempt fails at once.
    Daemon d({"orders.processing_ms=0", "webhooks.allow_private_networks=true"});
    Ctl ctl(d);
    const std::string closedUrl = "http://127.0.0.1:" + std::to_string(freePort()) + "/x";
    const std::string otherUrl = "http://127.0.0.1:" + std::to_string(freePort()) + "/other";

    // None yet.
    auto none = ctl({"webhooks", "list"});
    requireExit(none, 0);
    CHECK(none.out == "No webhook endpoints.\n");
    auto noneJson = ctl({"--json", "webhooks", "list"});
    requireExit(noneJson, 0);
    REQUIRE(getArray(noneJson.obj(), "webhook_endpoints"));
    CHECK(getArray(noneJson.obj(), "webhook_endpoints")->size() == 0);

    // Added as a table (two event types, given as a list and as a repeat)...
    auto added = ctl({"webhooks", "add", otherUrl, "--events", "order.paid", "--events", "order.failed"});
    requireExit(added, 0);
    INFO(added.describe());
    std::smatch m;
    REQUIRE(std::regex_search(added.out, m, std::regex("^Added: +(we_[0-9A-Z]{26}) " + std::regex_replace(otherUrl, std::regex("[.]"), "\\.") + "\n")));
    const std::string other = m[1];
    CHECK(contains(added.out, "Events:   order.paid,order.failed\n"));
    CHECK(std::regex_search(added.out, std::regex("\nSecret: +whsec_[A-Za-z0-9+/]{43}=\n")));
    CHECK(contains(added.out, "shown only now"));

    // ...and as JSON (every event type: none given).
    auto addedJson = ctl({"--json", "webhooks", "add", closedUrl});
    requireExit(addedJson, 0);
    const auto endpoint = addedJson.obj();
    const std::string id = getString(endpoint, "id").value_or("");
    CHECK(id.rfind("we_", 0) == 0);
    CHECK(getString(endpoint, "url").value_or("") == closedUrl);
    REQUIRE(getArray(endpoint, "events"));
    CHECK(getArray(endpoint, "events")->size() == 7);
    CHECK(endpoint->getValue<bool>("enabled"));
    CHECK(isNull(endpoint, "disabled_reason"));
    CHECK(std::regex_match(getString(endpoint, "created_at").value_or(""), std::regex("\\d{4}-\\d\\d-\\d\\dT.*")));
    const std::string firstSecret = getString(endpoint, "secret").value_or("");
    CHECK(firstSecret.rfind("whsec_", 0) == 0);

    // Listed, oldest first, without their secrets.
    auto listed = ctl({"webhooks", "list"});
    requireExit(listed, 0);
    {
        INFO(listed.out);
        const auto header = lineWith(listed.out, "STATE");
        CHECK(std::regex_search(header, std::regex("^ID +STATE +EVENTS +CREATED +URL")));
        const auto otherLine = lineWith(listed.out, other);
        CHECK(std::regex_search(otherLine, std::regex(" enabled +order\\.paid,order\\.failed +\\d{4}-")));
        CHECK(contains(otherLine, otherUrl));
        const auto line = lineWith(listed.out, id);
        CHECK(std::regex_search(line, std::regex(" enabled +all +\\d{4}-")));
        CHECK(contains(line, closedUrl));
        CHECK(listed.out.find(other) < listed.out.find(id));
        CHECK_FALSE(contains(listed.out, "whsec_"));
    }
    auto listedJson = ctl({"--json", "webhooks", "list"});
    requireExit(listedJson, 0);
    const auto endpoints = getArray(listedJson.obj(), "webhook_endpoints");
    REQUIRE(endpoints);
    REQUIRE(endpoints->size() == 2);
    CHECK(getString(arrayObject(endpoints, 0), "id").value_or("") == other);
    CHECK(getString(arrayObject(endpoints, 1), "id").value_or("") == id);
    CHECK_FALSE(arrayObject(endpoints, 1)->has("secret"));

    // Rotated: a new secret, and until when the old one still signs.
    auto rotated = ctl({"webhooks", "rotate", id});
    requireExit(rotated, 0);
    {
        INFO(rotated.out);
        CHECK(contains(rotated.out, "Rotated:  " + id));
        CHECK(std::regex_search(rotated.out, std::regex("\nSecret: +whsec_[A-Za-z0-9+/]{43}=\n")));
        CHECK_FALSE(contains(rotated.out, firstSecret));
        CHECK(std::regex_search(rotated.out, std::regex("The previous secret signs beside it until \\d{4}-\\d\\d-\\d\\dT")));
    }
    auto rotatedJson = ctl({"--json", "webhooks", "rotate", id});
    requireExit(rotatedJson, 0);
    CHECK(getString(rotatedJson.obj(), "id").value_or("") == id);
    CHECK(getString(rotatedJson.obj(), "secret").value_or("").rfind("whsec_", 0) == 0);
    CHECK(std::regex_match(getString(rotatedJson.obj(), "previous_secret_expires_at").value_or(""),
                           std::regex("\\d{4}-\\d\\d-\\d\\dT.*")));

    // No deliveries yet: nothing was sent to it.
    auto quiet = ctl({"webhooks", "deliveries", other});
    requireExit(quiet, 0);
    CHECK(quiet.out == "No deliveries to " + other + " yet.\n");
    auto quietJson = ctl({"--json", "webhooks", "deliveries", other});
    requireExit(quietJson, 0);
    REQUIRE(getArray(quietJson.obj(), "deliveries"));
    CHECK(getArray(quietJson.obj(), "deliveries")->size() == 0);
    CHECK(isNull(quietJson.obj(), "next"));

    // Two test events, one as a table and one as JSON; both fail (nothing
    // listens) and the delivery log shows each attempt with its error.
    auto tested = ctl({"webhooks", "test", id});
    requireExit(tested, 0);
    std::smatch ev;
    REQUIRE(std::regex_search(tested.out, ev, std::regex("Queued a webhook\\.test event (evt_test_[0-9A-Z]+) for " + id)));
    const std::string testEvent = ev[1];
    auto testedJson = ctl({"--json", "webhooks", "test", id});
    requireExit(testedJson, 0);
    const std::string secondEvent = getString(testedJson.obj(), "event_id").value_or("");
    CHECK(secondEvent.rfind("evt_test_", 0) == 0);
    CHECK(secondEvent != testEvent);

    std::string failedError;
    const bool attempted = eventually(
        [&] {
            auto r = ctl({"--json", "webhooks", "deliveries", id, "--limit", "100"});
            if (r.code != 0) return false;
            auto list = getArray(r.obj(), "deliveries");
            std::set<std::string> failed;
            for (std::size_t i = 0; list && i < list->size(); ++i) {
                auto a = arrayObject(list, i);
                if (getString(a, "event_type").value_or("") != "webhook.test") continue;
                if (!isNull(a, "status_code") || isNull(a, "error")) continue;
                failed.insert(getString(a, "event_id").value_or(""));
                failedError = getString(a, "error").value_or("");
            }
            return failed.count(testEvent) && failed.count(secondEvent);
        },
        30s, 200ms);
    INFO(d.logTail());
    REQUIRE(attempted);
    CHECK_FALSE(failedError.empty());

    auto log = ctl({"webhooks", "deliveries", id});
    requireExit(log, 0);
    {
        INFO(log.out);
        CHECK(std::regex_search(lineWith(log.out, "EVENT ID"),
                                std::regex("^ID +AT +EVENT +EVENT ID +ATTEMPT +STATUS +MS +ERROR$")));
        const auto line = lineWith(log.out, testEvent);
        CHECK(std::regex_search(line, std::regex("^whd_\\d+ +\\d{4}-\\S+ +webhook\\.test +" + testEvent + " +\\d+ +- +\\d+ +\\S")));
        CHECK(contains(line, failedError.substr(0, 20)));
    }
    // One at a time: the rest is said to be there.
    auto one = ctl({"--json", "webhooks", "deliveries", id, "--limit", "1"});
    requireExit(one, 0);
    REQUIRE(getArray(one.obj(), "deliveries"));
    CHECK(getArray(one.obj(), "deliveries")->size() == 1);
    CHECK(getString(one.obj(), "next").value_or("").find("/webhook-endpoints/" + id + "/deliveries?") == 0);
    auto oneTable = ctl({"webhooks", "deliveries", id, "--limit", "1"});
    requireExit(oneTable, 0);
    CHECK(contains(oneTable.out, "(the newest 1 shown; there are more: --limit takes up to 100)"));

    // Removed: as a table, and with --json (204: nothing to print).
    auto removed = ctl({"webhooks", "remove", other});
    requireExit(removed, 0);
    CHECK(contains(removed.out, "Removed " + other));
    auto removedJson = ctl({"--json", "webhooks", "remove", id});
    requireExit(removedJson, 0);
    CHECK(removedJson.out.empty());
    auto after = ctl({"--json", "webhooks", "list"});
    requireExit(after, 0);
    CHECK(getArray(after.obj(), "webhook_endpoints")->size() == 0);

    // An endpoint that does not exist (removed, or never was): the API's 404,
    // exit 1, nothing on stdout.
    for (const std::string& missing : {id, std::string("we_01ARZ3NDEKTSV4RRFFQ69G5FAV"), std::string("nonsense")}) {
        for (const std::vector<std::string>& args : {std::vector<std::string>{"webhooks", "remove", missing},
                                                     {"webhooks", "rotate", missing},
                                                     {"webhooks", "test", missing},
                                                     {"webhooks", "deliveries", missing},
                                                     {"--json", "webhooks", "deliveries", missing},
                                                     {"--json", "webhooks", "remove", missing}}) {
            auto r = ctl(args);
            INFO("orderpayctl " << Catch::Detail::stringify(args));
            requireExit(r, 1);
            CHECK(r.out.empty());
            CHECK(contains(r.err, "orderpayctl: "));
            CHECK(contains(r.err, "does not exist"));
        }
    }

    // A URL the daemon refuses: its 422, exit 1, the field named; nothing stored.
    auto refused = ctl({"webhooks", "add", "ftp://example.com/hook"});
    requireExit(refused, 1);
    CHECK(refused.out.empty());
    CHECK(contains(refused.err, "url"));
    CHECK(getArray(ctl({"--json", "webhooks", "list"}).obj(), "webhook_endpoints")->size() == 0);
}
