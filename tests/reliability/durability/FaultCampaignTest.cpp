// Injected faults, each on a running daemon and cleared
// again without restarting it:
//   - the database made read-only: `chattr +i` on the database and its WAL,
//     so writes through the daemon's open descriptors fail with EPERM;
//   - a full disk: the database on a 16 MiB tmpfs, filled up by a filler file;
//   - (RabbitMQ) the broker not there when the daemon starts.
// While a database fault lasts every write must get 503 + Retry-After
// (problem+json) and store nothing, reads must go on, /health/ready must
// name the database, and the daemon must say so in its log once, not per
// request. Once the fault clears it must take writes again by itself, and
// every order acknowledged before, during or after must be processed once.

#include "Daemon.h"
#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <Poco/Exception.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace e2e;
namespace fs = std::filesystem;

namespace {

bool longRun()
{
    const char* scale = std::getenv("ORDERPAY_RELIABILITY_SCALE");
    return scale && std::string(scale) == "long";
}

using Clock = std::chrono::steady_clock;

// Runs a shell command; REQUIREs exit status 0.
void shell(const std::string& command)
{
    const int status = std::system(command.c_str());
    INFO(command << " -> " << status);
    REQUIRE((status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0));
}

// The lines of `log` at warning level or above (the format is
// "<time> <priority letter> <logger>: <text>").
std::vector<std::string> warnings(const std::string& log)
{
    std::vector<std::string> out;
    std::istringstream in(log);
    std::string line;
    while (std::getline(in, line)) {
        const auto sp = line.find(' ');
        if (sp == std::string::npos || sp + 2 >= line.size() || line[sp + 2] != ' ') continue;
        const char p = line[sp + 1];
        if (p == 'W' || p == 'E' || p == 'C' || p == 'F') out.push_back(line);
    }
    return out;
}

std::size_t occurrences(const std::string& text, const std::string& needle)
{
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
}

// A small tmpfs of our own, so the disk can really be filled. Needs root.
class SmallDisk {
public:
    explicit SmallDisk(const std::string& path) : path_(path)
    {
        if (::mount("tmpfs", path.c_str(), "tmpfs", 0, "size=16m") != 0)
            FAIL("cannot mount a tmpfs at " << path << ": " << std::strerror(errno) << " (run the tests as root)");
    }
    ~SmallDisk() { ::umount2(path_.c_str(), MNT_DETACH); }
    SmallDisk(const SmallDisk&) = delete;
    SmallDisk& operator=(const SmallDisk&) = delete;

    void fill() const
    {
        const int fd = ::open((path_ + "/filler").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        REQUIRE(fd >= 0);
        const std::string block(4096, 'x');
        while (::write(fd, block.data(), block.size()) > 0) {
        }
        ::close(fd);
    }
    void free() const { ::unlink((path_ + "/filler").c_str()); }

private:
    std::string path_;
};

struct Figures {
    int faults = 0;
    std::size_t writesRefused = 0;
    std::size_t writesAcceptedDuringFault = 0; // squeezed in before the disk was quite full
    std::size_t readsOk = 0;
    std::size_t readsFailed = 0;
    std::size_t logLines = 0; // warnings and errors while faults lasted
    std::size_t acknowledged = 0;
    std::size_t lost = 0;
    std::size_t duplicates = 0;
    double recoverySeconds = 0; // worst time from clearing to the first 202
};

// The `database` component of /health/ready and the status.
std::pair<int, std::string> databaseHealth(const HttpClient& c)
{
    try {
        auto r = c.get("/health/ready");
        auto o = r.jsonObject();
        return {r.status, o ? getString(getObject(o, "components"), "database").value_or("") : ""};
    } catch (const Poco::Exception& e) {
        return {0, e.displayText()};
    }
}

std::string newOrder(const std::string& tag, std::size_t i)
{
    return orderJson(tag + "-" + std::to_string(i) + "@example.com");
}

// One episode on a running daemon: traffic, the fault, traffic during it,
// the fault cleared, traffic after. Adds the acknowledged order ids to `acked`.
void episode(Daemon& d, const std::string& name, const std::function<void()>& inject,
             const std::function<void()>& clear, std::vector<std::string>& acked, Figures& f)
{
    INFO("fault: " << name);
    HttpClient c(d.port());
    const int writesDuringFault = longRun() ? 1000 : 200;

    // Before: some work, left in the queue on purpose (the workers meet the
    // fault mid-way).
    std::vector<std::string> before;
    for (std::size_t i = 0; i < 10; ++i) before.push_back(c.createOrder(newOrder(name + "-before", i)));
    acked.insert(acked.end(), before.begin(), before.end());

    const auto t0 = Clock::now();
    auto mark = [&](const char* what) {
        std::cerr << name << ": " << what << " at "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count() << " ms\n";
    };
    const auto logOffset = d.log().size();
    inject();
    ++f.faults;

    // Until the first refusal: a full disk may still take a write or two into
    // pages SQLite already holds. Those were acknowledged and must survive.
    Response refused;
    std::size_t squeezed = 0;
    const bool gotRefused = eventually(
        [&] {
            refused = c.postOrder(newOrder(name + "-squeeze", squeezed));
            if (refused.status == 202) {
                acked.push_back(getString(refused.obj(), "id").value_or(""));
                ++squeezed;
                ++f.writesAcceptedDuringFault;
            }
            return refused.status == 503;
        },
        20s, 10ms);
    INFO(refused.describe());
    REQUIRE(gotRefused);
    mark("first refusal");

    // The fault lasts: writes are refused, reads served. Paced (one write
    // every 15 ms or so) so the fault spans a few seconds of retries.
    // A full disk is not all or nothing: once a checkpoint has reset the WAL,
    // a write that fits in the WAL file's existing pages commits (seen in
    // long runs). Such a write must be a real 202 whose order survives; a
    // read-only file takes none.
    const bool mayTakeSome = name == "disk-full";
    std::size_t takenHere = 0;
    bool idemTaken = false;
    const std::string idemKey = "fault-" + name + "-" + std::to_string(f.faults);
    const std::string idemBody = newOrder(name + "-idempotent", 0);
    bool healthSawDatabase = false;
    std::size_t refusedHere = 0, badRefusals = 0;
    std::string badRefusal;
    for (int i = 0; i < writesDuringFault; ++i) {
        Response r;
        if (i % 4 == 3) {
            // A wrong amount: if one is taken, it is rejected and the order
            // stays awaiting_payment like the others.
            r = c.postPayment(paymentJson(before[static_cast<std::size_t>(i) % before.size()], 1, "EUR", "card",
                                          "psp-" + idemKey + "-" + std::to_string(i)));
        } else if (i % 4 == 1) {
            r = c.postOrder(idemBody, {{"Idempotency-Key", idemKey}});
        } else {
            r = c.postOrder(newOrder(name + "-during", static_cast<std::size_t>(i)));
        }
        const auto problem = r.jsonObject();
        const std::string retryAfter = r.header("Retry-After");
        const bool proper =
            r.status == 503 && r.contentType().find("application/problem+json") == 0 && !retryAfter.empty() &&
            std::all_of(retryAfter.begin(), retryAfter.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) &&
            problem && getString(problem, "type").value_or("") == "/problems/unavailable";
        if (r.status == 503) ++refusedHere;
        if (mayTakeSome && r.status == 202) {
            ++takenHere;
            ++f.writesAcceptedDuringFault;
            if (i % 4 == 1) idemTaken = true;
            if (i % 4 != 3) acked.push_back(getString(r.obj(), "id").value_or(""));
            if (i % 4 == 1 && std::count(acked.begin(), acked.end(), acked.back()) > 1) acked.pop_back();  // a replay
            continue;
        }
        if (!proper) {
            ++badRefusals;
            badRefusal = r.describe();
        }
        // Reads: one order, and every tenth time a page of the list.
        const auto read = c.getOrder(before[static_cast<std::size_t>(i) % before.size()]);
        (read.status == 200 ? f.readsOk : f.readsFailed)++;
        if (i % 10 == 0) {
            const auto list = c.get("/orders?limit=50");
            (list.status == 200 ? f.readsOk : f.readsFailed)++;
        }
        if (i % 20 == 0 && !healthSawDatabase) {
            const auto [status, database] = databaseHealth(c);
            healthSawDatabase = status == 503 && database == "unavailable";
        }
        const auto next = Clock::now() + 15ms;
        eventually([&] { return Clock::now() >= next; }, 1s, 5ms); // pacing poll, bounded
    }
    mark("fault traffic done");
    f.writesRefused += refusedHere;
    INFO("a write during the fault was not a proper 503: " << badRefusal);
    CHECK(badRefusals == 0);
    CHECK(refusedHere + takenHere == static_cast<std::size_t>(writesDuringFault));
    CHECK(refusedHere > 0);
    const std::size_t maxRefusalLines = mayTakeSome ? 1 + takenHere + before.size() : 1;
    if (!healthSawDatabase) {
        // It samples the database at most once a second.
        healthSawDatabase = eventually(
            [&] {
                const auto [status, database] = databaseHealth(c);
                return status == 503 && database == "unavailable";
            },
            5s, 100ms);
    }
    CHECK(healthSawDatabase);
    CHECK(d.running());

    // The log: the cause, once, however many requests were refused.
    const auto faultLog = d.log().substr(logOffset);
    const auto faultWarnings = warnings(faultLog);
    f.logLines += faultWarnings.size();
    {
        std::string shown;
        for (const auto& l : faultWarnings) shown += l + "\n";
        INFO("warnings logged during the fault:\n" << shown);
        // Once per change of state. A read-only file changes state once. A
        // full disk can take a write now and then - a request's, or a
        // worker's for one of the orders queued before - and each one that
        // gets through is a change back and forth: a refusal and a recovery
        // line, never one per refused request.
        CHECK(faultWarnings.size() >= 1);
        CHECK(faultWarnings.size() <= 2 * maxRefusalLines);
        CHECK(occurrences(faultLog, "the database refuses writes") >= 1);
        CHECK(occurrences(faultLog, "the database refuses writes") <= maxRefusalLines);
    }

    // Cleared: the daemon notices by itself.
    mark("clearing");
    clear();
    const auto clearedAt = Clock::now();
    std::string firstAfter;
    const bool recovered = eventually(
        [&] {
            auto r = c.postOrder(newOrder(name + "-recovery", 0));
            if (r.status != 202) return false;
            firstAfter = getString(r.jsonObject(), "id").value_or("");
            return true;
        },
        30s, 50ms);
    const std::chrono::duration<double> took = Clock::now() - clearedAt;
    f.recoverySeconds = std::max(f.recoverySeconds, took.count());
    REQUIRE(recovered);
    acked.push_back(firstAfter);
    CHECK(eventually([&] { return databaseHealth(c).first == 200; }, 15s, 100ms));
    const auto afterLog = d.log().substr(logOffset);
    // Every refusal line has its recovery line.
    CHECK(occurrences(afterLog, "the database takes writes again") ==
          occurrences(afterLog, "the database refuses writes"));
    CHECK(occurrences(afterLog, "the database refuses writes") <= maxRefusalLines);

    // Nothing of the refused idempotent request was stored: the same key now
    // creates the order (not a replay), and a second time replays it.
    // (Unless the disk took it after all: then it is a replay.)
    auto first = c.postOrder(idemBody, {{"Idempotency-Key", idemKey}});
    INFO(first.describe());
    REQUIRE(first.status == 202);
    CHECK(first.has("Idempotent-Replayed") == idemTaken);
    if (!idemTaken) acked.push_back(getString(first.obj(), "id").value_or(""));
    auto replay = c.postOrder(idemBody, {{"Idempotency-Key", idemKey}});
    CHECK(replay.status == 202);
    CHECK(replay.header("Idempotent-Replayed") == "true");

    for (std::size_t i = 0; i < 10; ++i) acked.push_back(c.createOrder(newOrder(name + "-after", i)));
    mark("done");
}

// Every acknowledged order is there and processed exactly once; counts into `f`.
void checkNothingLost(const Daemon& d, const std::vector<std::string>& acked, Figures& f)
{
    HttpClient c(d.port());
    const auto listed = c.listAllOrderIds();
    const std::set<std::string> present(listed.begin(), listed.end());
    f.acknowledged += acked.size();
    for (const auto& id : acked)
        if (!present.count(id)) ++f.lost;
    CHECK(f.lost == 0);
    // Exactly the acknowledged orders exist: a refused write left nothing.
    CHECK(present == std::set<std::string>(acked.begin(), acked.end()));
    for (const auto& id : acked) {
        INFO("order " << id);
        auto o = c.waitForOrderStatus(id, "awaiting_payment", 60s).obj();
        checkProcessedExactlyOnce(o);
        std::map<std::string, int> seen;
        for (const auto& e : events(o)) {
            const auto type = getString(e, "type").value_or("");
            if (type == "step_completed") ++seen["step:" + getString(e, "step").value_or("")];
            if (type == "status") ++seen["status:" + getString(e, "status").value_or("")];
        }
        if (std::any_of(seen.begin(), seen.end(), [](const auto& kv) { return kv.second > 1; })) ++f.duplicates;
    }
    CHECK(f.duplicates == 0);
}

} // namespace

TEST_CASE("Faults: a read-only database and a full disk get 503s, reads go on, one log line, recovery",
          "[durability][faults]")
{
    const int cycles = longRun() ? 10 : 2;
    const auto started = Clock::now();
    Figures f;

    {
        // Read-only: the files stay open in the daemon; chattr +i makes every
        // write through those descriptors fail (EPERM), as on a file system
        // gone read-only, and chattr -i ends it.
        Daemon d({"orders.processing_ms=100"});
        std::vector<std::string> acked;
        const std::string db = d.dbPath();
        const std::string files = "'" + db + "' '" + db + "-wal'";
        {
            INFO("chattr +i needs root and a file system with the immutable flag (ext4, xfs, btrfs; not tmpfs); "
                 "the daemon's folder is under "
                 << fs::temp_directory_path() << " (TMPDIR)");
            shell("chattr +i " + files + " && chattr -i " + files);
        }
        // Whatever happens, leave no immutable file behind (it could not be deleted).
        struct Mutable {
            std::string files;
            ~Mutable() { (void)!std::system(("chattr -i " + files + " 2>/dev/null").c_str()); }
        } mutableAgain{files};
        for (int cycle = 0; cycle < cycles; ++cycle) {
            episode(
                d, "read-only", [&] { shell("chattr +i " + files); }, [&] { shell("chattr -i " + files); }, acked, f);
        }
        checkNothingLost(d, acked, f);
        CHECK(d.running());
    }
    {
        // Disk full: the database on a 16 MiB tmpfs, filled by another file.
        TempDir mountPoint;
        SmallDisk disk(mountPoint.path());
        Daemon d({"orders.processing_ms=100", "store.sqlite.path=" + mountPoint.path() + "/orderpay.db"});
        std::vector<std::string> acked;
        for (int cycle = 0; cycle < cycles; ++cycle)
            episode(
                d, "disk-full", [&] { disk.fill(); }, [&] { disk.free(); }, acked, f);
        checkNothingLost(d, acked, f);
        CHECK(d.running());
    }

    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started).count();
    std::cout << "RESULT campaign=faults broker=" << (usingRabbitMq() ? "rabbitmq" : "embedded")
              << " faults=" << f.faults << " kinds=read-only,disk-full writes_refused=" << f.writesRefused
              << " writes_squeezed_in=" << f.writesAcceptedDuringFault << " reads_ok=" << f.readsOk
              << " reads_failed=" << f.readsFailed << " log_lines=" << f.logLines << " acknowledged=" << f.acknowledged
              << " lost=" << f.lost << " duplicates=" << f.duplicates << " max_recovery_s=" << f.recoverySeconds
              << " seconds=" << seconds << std::endl;
    CHECK(f.readsFailed == 0);
}

// ---------------------------------------------------------------- RabbitMQ

namespace {

// Runs `rabbitmq-node COMMAND DIR [ARG]`; its exit status and output.
std::pair<int, std::string> rabbitMqNodeCommand(const std::string& command, const std::string& dir,
                                                const std::string& arg = {})
{
    const std::string out = dir + "." + command + ".out";
    const std::string cmd = "'" + rabbitMqNodeScript() + "' " + command + " '" + dir + "'" +
                            (arg.empty() ? "" : " '" + arg + "'") + " > '" + out + "' 2>&1";
    const int status = std::system(cmd.c_str());
    const int code = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
    std::string output = readFile(out);
    ::unlink(out.c_str());
    return {code, output};
}

// A node of this test's own (stopping the suite's node would break the cases
// running beside this one), under the suite node's folder so that the
// "rabbitmq: stop" cleanup ends it too if this process dies.
class PrivateRabbitMq {
public:
    PrivateRabbitMq()
    {
        const fs::path base = fs::path(rabbitMqNode().dir) / "private";
        fs::create_directories(base);
        std::string tmpl = (base / "durability-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        dir_ = tmpl;
        run("start", std::to_string(::getpid()));
        node_ = readRabbitMqEnv(dir_ + "/env");
    }
    ~PrivateRabbitMq()
    {
        auto [code, output] = rabbitMqNodeCommand("stop", dir_);
        if (code != 0) std::cerr << "rabbitmq-node stop " << dir_ << " failed:\n" << output << "\n";
        if (std::uncaught_exceptions() == 0 && !std::getenv("ORDERPAY_E2E_KEEP")) {
            std::error_code ec;
            fs::remove_all(dir_, ec);
        }
    }
    PrivateRabbitMq(const PrivateRabbitMq&) = delete;
    PrivateRabbitMq& operator=(const PrivateRabbitMq&) = delete;

    const RabbitMqNode& node() const { return node_; }
    void run(const std::string& command, const std::string& arg = {})
    {
        auto [code, output] = rabbitMqNodeCommand(command, dir_, arg);
        INFO("rabbitmq-node " << command << " " << dir_ << ":\n" << output);
        REQUIRE(code == 0);
    }

private:
    std::string dir_;
    RabbitMqNode node_;
};

} // namespace

TEST_CASE("Faults: RabbitMQ unreachable when the daemon starts: writes accepted, one log line, all processed later",
          "[.rabbitmq][faults]")
{
    INFO("ORDERPAY_E2E_RABBITMQ_ENV is not set: run this case through ctest as \"reliability-rabbitmq: ...\"");
    REQUIRE(usingRabbitMq());
    const auto started = Clock::now();
    const int orders = longRun() ? 1000 : 100;

    // The node's VM runs but the broker does not: its AMQP port refuses
    // connections, as with a broker that is down or not yet up.
    PrivateRabbitMq rmq;
    rmq.run("stop-app");
    Daemon d({"orders.processing_ms=0", "broker.kind=rabbitmq", "broker.rabbitmq.uri=" + rmq.node().uri,
              "broker.rabbitmq.prefix=" + uniqueBrokerPrefix()});
    HttpClient c(d.port());
    CHECK(c.get("/health/live").status == 200);
    auto ready = c.get("/health/ready");
    INFO(ready.describe());
    CHECK(ready.status == 503);
    CHECK(getString(getObject(ready.obj(), "components"), "broker").value_or("") == "disconnected");
    CHECK(getString(getObject(ready.obj(), "components"), "database").value_or("") == "ok");

    // Writes are taken (the outbox holds them) and reads answered throughout.
    std::vector<std::string> acked;
    std::size_t refused = 0, readsOk = 0, readsFailed = 0;
    for (int i = 0; i < orders; ++i) {
        auto r = c.postOrder(newOrder("broker-down", static_cast<std::size_t>(i)));
        if (r.status != 202) {
            ++refused;
            continue;
        }
        acked.push_back(getString(r.obj(), "id").value_or(""));
        (c.getOrder(acked.back()).status == 200 ? readsOk : readsFailed)++;
        if (i % 10 == 0) (c.get("/orders?limit=50").status == 200 ? readsOk : readsFailed)++;
    }
    CHECK(refused == 0);
    CHECK(readsFailed == 0);
    // The outage lasts a while: several reconnect attempts, which must not
    // each be logged.
    const auto outageUntil = started + 8s;
    eventually([&] { return Clock::now() >= outageUntil; }, 20s, 100ms);
    {
        std::size_t processedMeanwhile = 0;
        for (const auto& id : acked) {
            auto r = c.getOrder(id);
            (r.status == 200 ? readsOk : readsFailed)++;
            if (r.status == 200 && getString(r.obj(), "status").value_or("") != "queued") ++processedMeanwhile;
        }
        CHECK(processedMeanwhile == 0);
    }
    const auto outageLog = d.log();
    const auto outageWarnings = warnings(outageLog);
    {
        std::string shown;
        for (const auto& l : outageWarnings) shown += l + "\n";
        INFO("warnings logged during the outage:\n" << shown);
        CHECK(occurrences(outageLog, "RabbitMQ unavailable") == 1);
        CHECK(outageWarnings.size() <= 3); // the relay once; at most a line per consumer kind
    }

    // The broker comes up: the daemon connects by itself and works off the outbox.
    const auto upAt = Clock::now();
    rmq.run("start-app");
    const bool connected = eventually(
        [&] {
            auto r = c.get("/health/ready");
            return r.status == 200;
        },
        90s, 100ms);
    CHECK(connected);
    const std::chrono::duration<double> reconnect = Clock::now() - upAt;
    for (int i = 0; i < 10; ++i) acked.push_back(c.createOrder(newOrder("broker-up", static_cast<std::size_t>(i))));

    std::size_t lost = 0, duplicates = 0;
    const auto listed = c.listAllOrderIds();
    const std::set<std::string> present(listed.begin(), listed.end());
    for (const auto& id : acked)
        if (!present.count(id)) ++lost;
    CHECK(lost == 0);
    for (const auto& id : acked) {
        INFO("order " << id);
        auto o = c.waitForOrderStatus(id, "awaiting_payment", 120s).obj();
        checkProcessedExactlyOnce(o);
        std::map<std::string, int> seen;
        for (const auto& e : events(o)) {
            const auto type = getString(e, "type").value_or("");
            if (type == "step_completed") ++seen["step:" + getString(e, "step").value_or("")];
            if (type == "status") ++seen["status:" + getString(e, "status").value_or("")];
        }
        if (std::any_of(seen.begin(), seen.end(), [](const auto& kv) { return kv.second > 1; })) ++duplicates;
    }
    CHECK(duplicates == 0);
    CHECK(occurrences(d.log(), "RabbitMQ unavailable") == 1);
    CHECK(d.running());

    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started).count();
    std::cout << "RESULT campaign=faults broker=rabbitmq faults=1 kinds=broker-unreachable-at-start writes_accepted="
              << acked.size() << " writes_refused=" << refused << " reads_ok=" << readsOk
              << " reads_failed=" << readsFailed << " log_lines=" << outageWarnings.size() << " lost=" << lost
              << " duplicates=" << duplicates << " reconnect_s=" << reconnect.count() << " seconds=" << seconds
              << std::endl;
}
