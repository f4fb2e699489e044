// Crash campaign (guarantees 1 and 2).
//
// Four clients post orders and payments continuously (about 50 requests a
// second each), every POST with an Idempotency-Key; a request whose answer
// was lost is sent again, same key, same body, until it is answered.
// Meanwhile orderpayd is SIGKILLed at a random moment and started again, over
// and over; with RabbitMQ the broker (a private node: the suite's node serves
// other tests) is SIGKILLed and restarted too, in turns together with the
// daemon (which comes back first and is killed again while the broker boots)
// and while the daemon lives on (it must reconnect by itself). Afterwards, over HTTP: every acknowledged order and
// payment exists, nothing exists twice, every order reached its final state with each step and each status change
// recorded once, no order or reference was charged twice, every payment ended as its amount and reference say. Then,
// after a last SIGKILL, the database itself: PRAGMA integrity_check, and each step's effect (ledger, stock
// reservations, invoice) present exactly once.
//
// CI size by default; ORDERPAY_RELIABILITY_SCALE=long runs 500 iterations.
// The figures go to stdout as one line:
//   RESULT campaign=crash broker=<kind> iterations=.. ... lost=0 duplicates=0 ...
#include "Campaign.h"
#include "Daemon.h"
#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <Poco/Data/SQLite/Connector.h>
#include <Poco/Data/Session.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

using namespace e2e;
using namespace e2e::campaign;
namespace fs = std::filesystem;

namespace {

struct Scale {
    int iterations;
    int firstBrokerKill; // iteration of the first RabbitMQ kill
    int brokerKillEvery; // iterations between RabbitMQ kills (at least)
    int burst = 0;       // orders each client posts at once before its steady pace
};

bool longScale()
{
    const char* scale = std::getenv("ORDERPAY_RELIABILITY_SCALE");
    return scale && std::string(scale) == "long";
}

Scale campaignScale() { return longScale() ? Scale{500, 3, 25} : Scale{30, 3, 14}; }

/// At the shipped 6 s per order, after a burst: thousands of orders wait
/// in their timers when each kill lands.
Scale pacedScale() { return longScale() ? Scale{60, 3, 10, 5000} : Scale{10, 3, 3, 750}; }

// ---------------------------------------------------------------- RabbitMQ

// Runs `rabbitmq-node COMMAND DIR` and returns its exit status and output.
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

// A RabbitMQ node of the campaign's own, which it may kill: under the suite
// node's folder (DIR/private/<name>/) so that "rabbitmq: stop" ends it too if
// this process dies; the script's owner watcher ends it as well.
class CampaignRabbitMq {
public:
    CampaignRabbitMq()
    {
        const fs::path base = fs::path(rabbitMqNode().dir) / "private";
        fs::create_directories(base);
        std::string tmpl = (base / "crash-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        dir_ = tmpl;
        auto [code, output] = rabbitMqNodeCommand("start", dir_, std::to_string(::getpid()));
        INFO("rabbitmq-node start " << dir_ << ":\n" << output);
        REQUIRE(code == 0);
        node_ = readRabbitMqEnv(dir_ + "/env");
    }
    ~CampaignRabbitMq()
    {
        if (restarter_.joinable()) restarter_.join();
        auto [code, output] = rabbitMqNodeCommand("stop", dir_);
        if (code != 0) std::cerr << "rabbitmq-node stop " << dir_ << " failed:\n" << output << "\n";
        if (std::uncaught_exceptions() > 0) {
            std::string log = readFile(dir_ + "/log/" + node_.name + ".log");
            std::cerr << "---- RabbitMQ node log tail (" << dir_ << "/log) ----\n"
                      << (log.size() > 3000 ? log.substr(log.size() - 3000) : log) << "\n---- end ----\n";
        } else if (!std::getenv("ORDERPAY_E2E_KEEP")) {
            std::error_code ec;
            fs::remove_all(dir_, ec);
        }
    }
    CampaignRabbitMq(const CampaignRabbitMq&) = delete;
    CampaignRabbitMq& operator=(const CampaignRabbitMq&) = delete;

    std::vector<std::string> defines() const { return {"broker.kind=rabbitmq", "broker.rabbitmq.uri=" + node_.uri}; }

    // SIGKILL to the broker's VM.
    void kill()
    {
        REQUIRE_FALSE(restarting());
        auto [code, output] = rabbitMqNodeCommand("kill", dir_);
        INFO("rabbitmq-node kill " << dir_ << ":\n" << output);
        REQUIRE(code == 0);
        up_ = false;
    }
    // Starts it again on its data and returns once it serves.
    void restart()
    {
        auto [code, output] = rabbitMqNodeCommand("restart", dir_);
        INFO("rabbitmq-node restart " << dir_ << ":\n" << output);
        REQUIRE(code == 0);
        up_ = true;
    }
    // The same in a thread of its own: the campaign goes on meanwhile.
    void restartInBackground()
    {
        if (restarter_.joinable()) restarter_.join();
        restarting_ = true;
        restarter_ = std::thread([this] {
            auto result = rabbitMqNodeCommand("restart", dir_);
            std::lock_guard<std::mutex> lock(mu_);
            restartResult_ = result;
            up_ = result.first == 0;
            restarting_ = false;
        });
    }
    bool restarting() const { return restarting_; }
    bool up() const { return up_; }
    // Waits for a background restart; REQUIREs that it worked.
    void finishRestart()
    {
        if (restarter_.joinable()) restarter_.join();
        std::lock_guard<std::mutex> lock(mu_);
        if (!restartResult_) return;
        INFO("rabbitmq-node restart " << dir_ << ":\n" << restartResult_->second);
        REQUIRE(restartResult_->first == 0);
    }

private:
    std::string dir_;
    RabbitMqNode node_;
    std::atomic<bool> up_{true};
    std::atomic<bool> restarting_{false};
    std::thread restarter_;
    std::mutex mu_;
    std::optional<std::pair<int, std::string>> restartResult_;
};

// The `broker` component of GET /health/ready ("" if the daemon did not answer).
std::string brokerHealth(const HttpClient& c)
{
    try {
        auto o = c.get("/health/ready").jsonObject();
        return o ? getString(getObject(o, "components"), "broker").value_or("") : "";
    } catch (const std::exception&) {
        return {};
    }
}

// The database as the last SIGKILL left it.
struct DatabaseCheck {
    std::string integrity;
    std::uint64_t effectsWrong = 0;
    std::string example;
};

/// The rows of (order id, count) that `sql` selects, from the SQLite file or
/// the PostgreSQL database the daemon ran on.
CountsByOrder countsIn(const Daemon& d)
{
    if (!d.postgresqlUri().empty()) return postgresqlCounts(d.postgresqlUri());
    const std::string path = d.dbPath();
    return [path](const std::string& sql) {
        using namespace Poco::Data::Keywords;
        Poco::Data::SQLite::Connector::registerConnector();
        Poco::Data::Session s("SQLite", path);
        std::vector<std::string> ids;
        std::vector<Poco::Int64> counts;
        s << sql, into(ids), into(counts), now;
        std::map<std::string, std::int64_t> got;
        for (std::size_t i = 0; i < ids.size(); ++i) got[ids[i]] = counts[i];
        return got;
    };
}

DatabaseCheck checkDatabase(const Daemon& d, const std::vector<OrderRecord>& acked)
{
    DatabaseCheck result;
    if (d.postgresqlUri().empty()) {
        using namespace Poco::Data::Keywords;
        Poco::Data::SQLite::Connector::registerConnector();
        Poco::Data::Session s("SQLite", d.dbPath());
        std::vector<std::string> rows;
        s << "PRAGMA integrity_check", into(rows), now;
        for (const auto& r : rows) result.integrity += (result.integrity.empty() ? "" : "; ") + r;
    } else {
        // The daemon was killed, not the server: PostgreSQL's own files are
        // not what this campaign tests (its unique indexes hold the ledger).
        result.integrity = "ok";
    }
    const EffectsCheck effects = checkEffects(countsIn(d), acked);
    result.effectsWrong = effects.wrong;
    result.example = effects.example;
    return result;
}

} // namespace

/// Orders in processing now, as /metrics counts them (0 if it cannot tell).
std::int64_t ordersInProcessing(const HttpClient& c)
{
    auto r = c.get("/metrics");
    if (r.status != 200) return 0;
    const std::string series = "orderpay_orders{status=\"processing\"} ";
    std::istringstream lines(r.body);
    for (std::string line; std::getline(lines, line);)
        if (line.rfind(series, 0) == 0) return std::stoll(line.substr(series.size()));
    return 0;
}

/// The processing times a campaign restarts the daemon with, in turn at random.
struct Variant {
    std::string name;
    Scale scale;
    std::vector<std::string> processingMs;
};

void runCampaign(const Variant& variant)
{
    const auto started = Clock::now();
    const bool rabbit = usingRabbitMq();
    const Scale scale = variant.scale;
    const std::uint64_t seed = std::random_device{}();
    std::mt19937_64 rng(seed);
    INFO("seed " << seed);

    std::optional<CampaignRabbitMq> broker;
    std::vector<std::string> defines{"orders.workers=3", "payments.workers=2",
                                     "orders.processing_ms=" + variant.processingMs.front(), "retry.max_attempts=10",
                                     "retry.backoff_ms=100"};
    if (rabbit) {
        broker.emplace();
        for (const auto& d : broker->defines()) defines.push_back(d);
    }
    Daemon d(defines, Daemon::Wait::No);
    d.waitReady(60s);
    HttpClient admin(d.port());
    if (rabbit) REQUIRE(eventually([&] { return brokerHealth(admin) == "ok"; }, 60s, 100ms));

    Ledger ledger;
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    const std::string tag = "crash-" + std::to_string(seed % 1000000007);
    for (int t = 0; t < 4; ++t)
        clients.emplace_back(client, std::vector<HttpClient>{HttpClient(d.port())}, t, seed + 1 + t, tag, std::ref(ledger), std::cref(stop), scale.burst, Millis(10s));
    // Whatever fails below, the clients must be stopped before the ledger goes.
    struct Joiner {
        Ledger& ledger;
        std::atomic<bool>& stop;
        std::vector<std::thread>& threads;
        ~Joiner()
        {
            ledger.abort = std::uncaught_exceptions() > 0;
            stop = true;
            for (auto& t : threads)
                if (t.joinable()) t.join();
        }
    } joiner{ledger, stop, clients};

    std::int64_t mostInFlight = 0;
    int daemonKills = 0, brokerKills = 0, brokerKillsAlone = 0;
    int nextBrokerKill = scale.firstBrokerKill;
    // With RabbitMQ, past the planned iterations until both kinds of broker
    // kill happened (a broker restarting in the background skips a turn),
    // within three times as many.
    auto brokerKillsDone = [&] { return !rabbit || (brokerKills >= 2 && brokerKillsAlone >= 1); };
    const int last = scale.iterations * 3;
    int iterations = 0;
    for (int i = 1; i <= scale.iterations || (!brokerKillsDone() && i <= last); ++i) {
        iterations = i;
        const auto window = Millis(std::uniform_int_distribution<int>(200, 1500)(rng));
        const auto acknowledgedBefore = ledger.acknowledged.load();
        // The traffic window is the point, not a wait for something: kill at a random moment.
        std::this_thread::sleep_until(Clock::now() + window);
        {
            INFO("iteration " << i << ": nothing acknowledged for 60 s");
            REQUIRE(eventually([&] { return ledger.acknowledged > acknowledgedBefore; }, 60s, 5ms));
        }
        if (rabbit && i >= nextBrokerKill && !broker->restarting()) {
            nextBrokerKill = i + scale.brokerKillEvery;
            ++brokerKills;
            ledger.faulty = true;
            broker->kill();
            // Every second kill, the daemon lives on (the first one does not:
            // its restart then overlaps with the iterations that follow).
            if (brokerKills % 2 == 0) {
                // The daemon lives through the outage: writes go on (outbox),
                // and once the broker is back it reconnects by itself.
                ++brokerKillsAlone;
                broker->restart();
                ledger.faulty = false;
                INFO("iteration " << i << ": the daemon did not reconnect to the restarted broker");
                REQUIRE(eventually([&] { return brokerHealth(admin) == "ok"; }, 90s, 100ms));
            } else {
                // Broker and daemon die together; the daemon comes back
                // first, and is killed again while the broker boots.
                broker->restartInBackground();
            }
        }
        if (rabbit && ledger.faulty && !broker->restarting() && broker->up()) ledger.faulty = false;
        mostInFlight = std::max(mostInFlight, ordersInProcessing(admin));
        d.kill();
        ++daemonKills;
        const auto& choices = variant.processingMs;
        const std::string processingMs =
            i >= scale.iterations
                ? choices.front()
                : choices[std::uniform_int_distribution<std::size_t>(0, choices.size() - 1)(rng)];
        d.restart({"orders.processing_ms=" + processingMs}, Daemon::Wait::No);
        d.waitReady(60s);
        if (i % 50 == 0) {
            std::cerr << "crash campaign (" << (rabbit ? "rabbitmq" : "embedded") << "): " << i << "/"
                      << scale.iterations << " iterations, " << ledger.acknowledged << " acknowledged, "
                      << static_cast<int>(secondsSince(started)) << " s\n";
        }
    }

    const auto trafficEnded = Clock::now();
    const double trafficSeconds = std::chrono::duration<double>(trafficEnded - started).count();
    // The clients finish what they started (each request until answered).
    stop = true;
    for (auto& t : clients) t.join();
    if (rabbit) {
        broker->finishRestart();
        ledger.faulty = false;
        INFO("the daemon did not connect to the restarted broker");
        REQUIRE(eventually([&] { return brokerHealth(admin) == "ok"; }, 90s, 100ms));
    }

    const Verdict verdict = verify(admin, ledger);
    const auto& ackedOrders = ledger.orders();
    const auto& ackedPayments = ledger.payments();

    // A last crash, then the database file itself.
    d.kill();
    ++daemonKills;
    const auto db = checkDatabase(d, ackedOrders);

    std::ostringstream result;
    result << "RESULT campaign=" << variant.name << " broker=" << (rabbit ? "rabbitmq" : "embedded")
           << " store=" << (d.postgresqlUri().empty() ? "sqlite" : "postgresql")
           << " iterations=" << iterations << " requests=" << ledger.requests << " retries=" << ledger.retries
           << " replayed=" << ledger.replayed << " unavailable=" << ledger.unavailable
           << " acknowledged_orders=" << ackedOrders.size() << " acknowledged_payments=" << ackedPayments.size()
           << " paid=" << verdict.paid << " awaiting_payment=" << verdict.awaiting
           << " payments_succeeded=" << verdict.succeeded << " payments_rejected=" << verdict.rejected
           << " most_in_flight_at_a_kill=" << mostInFlight
           << " daemon_kills=" << daemonKills << " broker_kills=" << brokerKills;
    if (rabbit) result << " acked_while_broker_down=" << ledger.ackedDuringFault;
    result << violationsLine(verdict, ledger) << " effects_wrong=" << db.effectsWrong
           << " integrity=" << (db.integrity == "ok" ? "ok" : "FAILED")
           << " seconds=" << static_cast<int>(secondsSince(started) + 0.5)
           << " traffic_seconds=" << static_cast<int>(trafficSeconds + 0.5)
           << " drain_seconds=" << static_cast<int>(verdict.drainSeconds + 0.5)
           << " verify_seconds=" << static_cast<int>(verdict.verifySeconds + 0.5) << " seed=" << seed;
    std::cout << result.str() << std::endl;

    INFO(result.str());
    checkClean(verdict, ledger);
    {
        INFO("PRAGMA integrity_check: " << db.integrity);
        CHECK(db.integrity == "ok");
    }
    {
        INFO("step effects: " << db.example);
        CHECK(db.effectsWrong == 0);
    }
    // The campaign really exercised what it claims to.
    CHECK(ackedOrders.size() >= static_cast<std::size_t>(scale.iterations));
    // Most of a burst is still waiting in its timers when a kill lands.
    if (scale.burst > 0) CHECK(mostInFlight >= scale.burst);
    CHECK(verdict.paid > 0);
    CHECK(verdict.rejected > 0);
    if (rabbit) {
        CHECK(brokerKills >= 2);
        CHECK(brokerKillsAlone >= 1);
        CHECK(ledger.ackedDuringFault > 0);
    }
}

TEST_CASE("Crash campaign: SIGKILL under load, every acknowledged order and payment completes exactly once",
          "[reliability][crash]")
{
    // Processing in one transaction (0) or step by step, each step a commit
    // of its own after its timer, and a moment to be killed in.
    runCampaign({"crash", campaignScale(), {"0", "0", "6", "30"}});
}

TEST_CASE("Crash campaign at the shipped 6 s per order: SIGKILL with thousands of orders waiting in their timers",
          "[reliability][crash]")
{
    runCampaign({"crash-paced", pacedScale(), {"6000"}});
}
