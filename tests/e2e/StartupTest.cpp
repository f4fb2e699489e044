// Starting and refusing to start: a start that fails says what failed in
// one line, exits with its code (78 for the configuration, 70 otherwise)
// at once, and leaves no thread behind; --check-config refuses exactly
// what the daemon refuses at start.
#include "Daemon.h"
#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>

#include <sqlite3.h>
#include <sys/stat.h>

using namespace e2e;

namespace {

/// orderpayd with the shipped configuration, the given overrides and a
/// log on the console.
RunResult start(const std::vector<std::string>& defines, RunAs user = {}, const std::string& config = configPath())
{
    std::vector<std::string> args{"--config=" + config, "-D", "logging.target=console"};
    for (const auto& d : defines) {
        args.push_back("-D");
        args.push_back(d);
    }
    return runOrderpayd(args, 20s, user);
}

/// The line of `output` that holds `text`, or empty.
std::string lineWith(const std::string& output, const std::string& text)
{
    const auto at = output.find(text);
    if (at == std::string::npos) return {};
    const auto begin = output.rfind('\n', at);
    const auto end = output.find('\n', at);
    return output.substr(begin == std::string::npos ? 0 : begin + 1,
                         (end == std::string::npos ? output.size() : end) - (begin == std::string::npos ? 0 : begin + 1));
}

struct FailedStart {
    std::string what;
    std::vector<std::string> defines;
    RunAs user;
    int code;
    std::vector<std::string> reason;  // all of these on one line of the output
};

}  // namespace

TEST_CASE("A start that fails names what failed in one line, exits with its code within a second, and leaves no "
          "thread behind",
          "[operation][startup]")
{
    TempDir dir;
    // Folders nobody may enter; one nobody may not write to, one it may.
    ::chmod(dir.path().c_str(), 0755);
    const std::string locked = dir.path() + "/locked";
    const std::string open = dir.path() + "/open";
    REQUIRE(::mkdir(locked.c_str(), 0755) == 0);
    REQUIRE(::mkdir(open.c_str(), 0777) == 0);
    ::chmod(open.c_str(), 0777);

    // A port another process holds.
    Poco::Net::ServerSocket taken(Poco::Net::SocketAddress("127.0.0.1", 0));
    const std::string takenPort = std::to_string(taken.address().port());

    // A database a newer release has written.
    const std::string newer = dir.path() + "/newer.db";
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(newer.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);

    // A token file only root may read.
    const std::string tokens = dir.write("tokens", "secret-token\n", 0600);
    // The shipped configuration where nobody can read it (the source tree
    // may be below a folder only root may enter).
    const std::string config = dir.write("orderpay.properties", readFile(configPath()), 0644);

    const std::vector<FailedStart> cases = {
        {"the port is in use",
         {"http.port=" + takenPort, "store.sqlite.path=" + dir.path() + "/a.db"},
         {},
         70,
         {"cannot listen on 127.0.0.1:" + takenPort + ": address already in use"}},
        {"the database's folder is not writable",
         {"http.port=0", "store.sqlite.path=" + locked + "/orderpay.db"},
         RunAs::nobody(),
         70,
         {"cannot open the database " + locked + "/orderpay.db", "can this user create and write files in " + locked}},
        {"the database's folder does not exist",
         {"http.port=0", "store.sqlite.path=" + dir.path() + "/missing/orderpay.db"},
         {},
         70,
         {"cannot open the database " + dir.path() + "/missing/orderpay.db", "does not exist"}},
        {"the database has a newer schema",
         {"http.port=0", "store.sqlite.path=" + newer},
         {},
         70,
         {"the database " + newer + " has schema version 99", "newer than this orderpayd understands"}},
        {"the token file is unreadable",
         {"http.port=0", "store.sqlite.path=" + open + "/orderpay.db", "http.auth.token_file=" + tokens},
         RunAs::nobody(),
         78,
         {"http.auth.token_file", tokens + " cannot be read: Permission denied"}},
    };
    for (const auto& c : cases) {
        INFO("case: " << c.what);
        const RunResult r = start(c.defines, c.user, config);
        INFO("exit code " << r.exitCode << " after " << r.elapsed.count() << " ms; output:\n" << r.output);
        REQUIRE_FALSE(r.timedOut);
        CHECK(r.exitCode == c.code);
        CHECK(r.elapsed < 1s);
        const std::string line = lineWith(r.output, c.reason.front());
        CHECK_FALSE(line.empty());
        for (const auto& part : c.reason) CHECK(line.find(part) != std::string::npos);
        // Every part joined what it started before the process ended.
        CHECK(r.output.find("threads still running at exit") == std::string::npos);
    }
}

TEST_CASE("A second daemon on the port of a running one fails to start instead of sharing the port",
          "[operation][startup]")
{
    Daemon first({"orders.processing_ms=0"});
    TempDir dir;
    const RunResult second = start({"http.port=" + std::to_string(first.port()), "store.sqlite.path=" + dir.path() + "/b.db"});
    INFO("exit code " << second.exitCode << "; output:\n" << second.output);
    REQUIRE_FALSE(second.timedOut);
    CHECK(second.exitCode == 70);
    CHECK(second.output.find("address already in use") != std::string::npos);
    CHECK(first.running());
}

TEST_CASE("A daemon that stops leaves no thread behind", "[operation][startup][signals]")
{
    for (const std::string& broker : {std::string("embedded"), std::string("default")}) {
        INFO("broker: " << broker);
        Daemon d(broker == "embedded" ? std::vector<std::string>{"orders.processing_ms=0", "broker.kind=embedded"}
                                      : std::vector<std::string>{"orders.processing_ms=0"});
        HttpClient(d.port()).createOrder(orderJson("stop@example.com"));
        CHECK(d.terminate() == 0);
        INFO("log: " << d.logTail());
        CHECK(d.log().find("threads still running at exit") == std::string::npos);
        CHECK(d.log().find("stopped") != std::string::npos);
    }
}

TEST_CASE("Every configuration the daemon refuses at start, --check-config refuses too, naming file and key",
          "[operation][config]")
{
    TempDir dir;
    const std::string shipped = readFile(configPath());
    REQUIRE_FALSE(shipped.empty());
    const std::string tokensOpen = dir.write("tokens-open", "t\n", 0644);
    const std::string tokensEmpty = dir.write("tokens-empty", "# no token yet\n", 0600);
    const std::string passwordsOpen = dir.write("pgpass-open", "*:*:*:orderpay:s3cret\n", 0644);
    struct Case {
        std::vector<std::string> lines;  // added to the configuration file
        std::string key;                 // named by both
    };
    const std::vector<Case> cases = {
        {{"http.host = 0.0.0.0"}, "http.host"},
        {{"http.host = no-such-host.invalid"}, "http.host"},
        {{"store.kind = mysql"}, "store.kind"},
        {{"broker.lease = 100ms"}, "broker.lease"},
        {{"broker.kind = rabbitmq", "broker.rabbitmq.uri = amqp://u:p@mq1/shop,amqp://u:p@mq2/other"},
         "broker.rabbitmq.uri"},
        {{"store.postgresql.uri = postgresql://orderpay:s3cret@db/x?nosuchoption=1"}, "store.postgresql.uri"},
        {{"store.postgresql.password_file = " + passwordsOpen}, "store.postgresql.password_file"},
        {{"store.postgresql.pool_size = 0"}, "store.postgresql.pool_size"},
        {{"http.auth.token_file = " + dir.path() + "/no-such-file"}, "http.auth.token_file"},
        {{"http.auth.token_file = " + tokensOpen}, "http.auth.token_file"},
        {{"http.auth.token_file = " + tokensEmpty}, "http.auth.token_file"},
        {{"http.port = notanumber"}, "http.port"},
        {{"orders.workers = 0"}, "orders.workers"},
        {{"broker.kind = rabbitmq", "broker.rabbitmq.uri = not-a-uri"}, "broker.rabbitmq.uri"},
        {{"no.such.key = 1"}, "no.such.key"},
    };
    int n = 0;
    for (const auto& c : cases) {
        std::string text = shipped + "\nhttp.port = 0\nstore.sqlite.path = " + dir.path() + "/orderpay.db\n";
        for (const auto& line : c.lines) text += line + "\n";
        const std::string file = dir.write("case-" + std::to_string(++n) + ".properties", text, 0644);
        INFO("configuration lines: " << Catch::Detail::stringify(c.lines));

        const RunResult daemon = start({}, {}, file);
        INFO("the daemon: exit " << daemon.exitCode << "\n" << daemon.output);
        REQUIRE_FALSE(daemon.timedOut);
        CHECK(daemon.exitCode == 78);
        CHECK(lineWith(daemon.output, file + ": " + c.key + ":") != "");

        const RunResult check = runOrderpayd({"--config=" + file, "--check-config"});
        INFO("--check-config: exit " << check.exitCode << "\n" << check.output);
        CHECK(check.exitCode == 1);
        CHECK(lineWith(check.output, file + ": " + c.key + ":") != "");
        // A password is never shown, not even one that is wrong.
        CHECK(check.output.find("s3cret") == std::string::npos);
        CHECK(daemon.output.find("s3cret") == std::string::npos);
    }
    // Without the bad lines the same file is fine.
    const std::string good = dir.write("good.properties",
                                       shipped + "\nhttp.port = 0\nstore.sqlite.path = " + dir.path() + "/orderpay.db\n",
                                       0644);
    CHECK(runOrderpayd({"--config=" + good, "--check-config"}).exitCode == 0);
}
