// Losing a machine (issue: surviving the loss of a machine). Each scenario
// builds hosts of its own (network namespaces on a bridge), runs real
// servers and two orderpayd instances on them, sends the crash campaign's
// traffic (orders and payments, every POST retried with its
// Idempotency-Key until answered, by whichever instance answers) and, in
// the middle of it, loses one machine:
//   - a RabbitMQ node of a three-node cluster with quorum queues (SIGKILL,
//     later restarted);
//   - the PostgreSQL primary (SIGKILL), its streaming standby promoted:
//     synchronous replication (nothing acknowledged may be lost) and
//     asynchronous (what was lost is counted and printed);
//   - one instance's link, cut for longer than broker.lease and restored.
// Afterwards every acknowledged order and payment must have completed
// exactly once, with each step's effect stored once. Each scenario prints
// one line with its figures (recovery times in milliseconds):
//   RESULT campaign=cluster-<scenario> ... lost=0 duplicates=0 ...
// ORDERPAY_RELIABILITY_SCALE=long runs the traffic longer.
#include "Campaign.h"
#include "Cluster.h"
#include "Daemon.h"
#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

using namespace e2e;
using namespace e2e::campaign;
using namespace cluster;

namespace {

bool longScale()
{
    const char* scale = std::getenv("ORDERPAY_RELIABILITY_SCALE");
    return scale && std::string(scale) == "long";
}

// Acknowledgements to wait for before, during and after each fault.
std::uint64_t phaseAcks() { return longScale() ? 3000 : 300; }

std::int64_t millisSince(Clock::time_point t)
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// The value of one series of an instance's /metrics (-1 if it did not answer).
std::int64_t metric(const Daemon& d, const std::string& series)
{
    try {
        HttpClient c(d.host(), d.port());
        c.setTimeout(2s);
        auto r = c.get("/metrics");
        std::istringstream lines(r.body);
        for (std::string line; std::getline(lines, line);)
            if (line.rfind(series + " ", 0) == 0) return std::stoll(line.substr(series.size() + 1));
    } catch (const std::exception&) {
    }
    return -1;
}

// The clients of the service: the crash campaign's, four of them, each
// sending to every instance in turn (through the bridge).
class Traffic {
public:
    Traffic(const std::vector<const Daemon*>& instances, const std::string& tag)
    {
        std::vector<HttpClient> targets;
        for (const auto* d : instances) targets.emplace_back(d->host(), d->port());
        const std::uint64_t seed = std::random_device{}();
        for (int t = 0; t < 4; ++t)
            threads_.emplace_back(client, targets, t, seed + t, tag, std::ref(ledger), std::cref(stop_), 0, Millis(3s));
    }
    ~Traffic()
    {
        ledger.abort = std::uncaught_exceptions() > 0;
        stop();
    }
    void stop()
    {
        stop_ = true;
        for (auto& t : threads_)
            if (t.joinable()) t.join();
    }
    // Waits until `more` requests more were acknowledged.
    void awaitAcks(std::uint64_t more, const std::string& when)
    {
        const auto target = ledger.acknowledged + more;
        INFO(when << ": fewer than " << more << " acknowledgements within 120 s (" << ledger.acknowledged << ")");
        REQUIRE(eventually([&] { return ledger.acknowledged >= target; }, 120s, 20ms));
    }

    Ledger ledger;

private:
    std::atomic<bool> stop_{false};
    std::vector<std::thread> threads_;
};

// An instance of the service on a host of its own.
std::unique_ptr<Daemon> instance(const Hosts& hosts, const std::string& name, std::vector<std::string> defines)
{
    defines.push_back("instance.name=" + name);
    auto d = std::make_unique<Daemon>(defines, Daemon::Wait::No, std::vector<std::string>{}, hosts.placement(name));
    d->waitReady(60s);
    return d;
}

// Waits until the instance reports `component` ok; the milliseconds from `since`.
std::int64_t awaitReady(const Daemon& d, const std::string& component, Clock::time_point since, Millis timeout)
{
    std::string state;
    const bool ok = eventually([&] { return (state = readiness(d, component)) == "ok"; }, timeout, 10ms);
    INFO("instance on " << d.host() << ": " << component << " is '" << state << "'; log tail:\n" << d.logTail());
    REQUIRE(ok);
    return millisSince(since);
}

// The RESULT line's common part, and the checks every scenario makes.
std::string finish(const std::string& name, Traffic& traffic, const Daemon& api, const std::string& databaseUri,
                   const std::string& figures, bool lossAllowed)
{
    traffic.stop();
    const Verdict verdict = verify(HttpClient(api.host(), api.port()), traffic.ledger);
    const EffectsCheck effects = checkEffects(postgresqlCounts(databaseUri), traffic.ledger.orders());
    const Ledger& ledger = traffic.ledger;
    std::ostringstream line;
    line << "RESULT campaign=cluster-" << name << " requests=" << ledger.requests << " retries=" << ledger.retries
         << " unavailable=" << ledger.unavailable << " acknowledged_orders=" << ledger.orders().size()
         << " acknowledged_payments=" << ledger.payments().size()
         << " acknowledged_during_fault=" << ledger.ackedDuringFault << figures << violationsLine(verdict, ledger)
         << " effects_wrong=" << effects.wrong;
    std::cout << line.str() << std::endl;
    INFO(line.str());
    if (lossAllowed) {
        // Asynchronous replication: what the old primary had not sent is
        // gone (counted above); nothing may exist twice or half done.
        INFO("violations (first 30):\n" << verdict.tally.examples());
        CHECK(verdict.drained);
        for (const char* kind : {"duplicates", "double_steps", "double_events", "double_charges", "wrong_outcomes"}) {
            INFO(kind);
            CHECK(verdict.tally[kind] == 0);
        }
    } else {
        checkClean(verdict, ledger);
        INFO("step effects: " << effects.example);
        CHECK(effects.wrong == 0);
    }
    CHECK(verdict.paid > 0);
    return line.str();
}

std::vector<std::string> commonDefines()
{
    return {"orders.workers=2",     "payments.workers=1",   "orders.processing_ms=20",
            "retry.max_attempts=10", "retry.backoff_ms=100", "broker.lease=4s",
            "store.postgresql.pool_size=6"};
}

}  // namespace

TEST_CASE("A RabbitMQ node of the cluster is lost: the instances go on through the others", "[cluster][rabbitmq]")
{
    TempDir dir;
    Hosts hosts(dir.path() + "/hosts", {"pg", "r1", "r2", "r3", "d1", "d2"});
    PostgresqlServer pg(hosts, "pg");
    cluster::RabbitMqNode r1(hosts, "r1");
    cluster::RabbitMqNode r2(hosts, "r2", &r1);
    cluster::RabbitMqNode r3(hosts, "r3", &r1);

    // Both instances prefer r1, the node to be lost: every connection of
    // theirs must move.
    auto defines = commonDefines();
    for (const char* d : {"store.kind=postgresql", "broker.kind=rabbitmq", "broker.rabbitmq.queue_type=quorum"})
        defines.emplace_back(d);
    defines.push_back("store.postgresql.uri=" + pg.uri());
    defines.push_back("broker.rabbitmq.uri=" + r1.uri() + "," + r2.uri() + "," + r3.uri());
    auto d1 = instance(hosts, "d1", defines);
    auto d2 = instance(hosts, "d2", defines);
    for (const Daemon* d : {d1.get(), d2.get()}) awaitReady(*d, "broker", Clock::now(), 60s);
    {
        const std::string queues = r2.ctl("list_queues -p " + quoted(r2.vhost()) + " name type");
        INFO(queues);
        CHECK(queues.find("orderpay.orders\tquorum") != std::string::npos);
        CHECK(queues.find("orderpay.orders.retry.1\tquorum") != std::string::npos);
    }

    Traffic traffic({d1.get(), d2.get()}, "rabbitmq-node-lost");
    traffic.awaitAcks(phaseAcks(), "before the loss");
    const auto reconnectsBefore1 = metric(*d1, "orderpay_broker_reconnects_total");
    const auto reconnectsBefore2 = metric(*d2, "orderpay_broker_reconnects_total");
    const auto lost = Clock::now();
    traffic.ledger.faulty = true;
    r1.kill();
    // Back when every consumer of the instance is connected again (each
    // counts a reconnect) and its relay is: the broker reads "ok".
    std::int64_t back1 = 0, back2 = 0;
    {
        INFO("d1 did not reconnect every consumer");
        REQUIRE(eventually([&] { return metric(*d1, "orderpay_broker_reconnects_total") >= reconnectsBefore1 + 3; },
                           60s, 10ms));
        back1 = awaitReady(*d1, "broker", lost, 60s);
    }
    {
        INFO("d2 did not reconnect every consumer");
        REQUIRE(eventually([&] { return metric(*d2, "orderpay_broker_reconnects_total") >= reconnectsBefore2 + 3; },
                           60s, 10ms));
        back2 = awaitReady(*d2, "broker", lost, 60s);
    }
    traffic.awaitAcks(phaseAcks(), "with r1 lost");
    const auto processedBefore = metric(*d1, "orderpay_orders_processed_total");
    r1.restart();
    const std::int64_t downMs = millisSince(lost);
    traffic.ledger.faulty = false;
    traffic.awaitAcks(phaseAcks(), "after r1 came back");

    std::ostringstream figures;
    figures << " node_down_ms=" << downMs << " reconnected_ms=" << std::max(back1, back2);
    finish("rabbitmq-node-lost", traffic, *d1, pg.uri(), figures.str(), false);
    (void)processedBefore;
    CHECK(std::max(back1, back2) < 15000);
}

namespace {

// The primary is lost and its standby promoted, during traffic.
void failover(bool synchronous)
{
    TempDir dir;
    Hosts hosts(dir.path() + "/hosts", {"pg1", "pg2", "d1", "d2"});
    PostgresqlServer pg1(hosts, "pg1");
    PostgresqlServer pg2(hosts, "pg2", pg1);
    if (synchronous) pg1.synchronous(true);

    auto defines = commonDefines();
    defines.emplace_back("store.kind=postgresql");
    defines.push_back("store.postgresql.uri=" + failoverUri({&pg1, &pg2}));
    auto d1 = instance(hosts, "d1", defines);
    auto d2 = instance(hosts, "d2", defines);

    const std::string name = synchronous ? "postgresql-failover-sync" : "postgresql-failover-async";
    Traffic traffic({d1.get(), d2.get()}, name);
    traffic.awaitAcks(phaseAcks(), "before the failover");
    const auto unavailableBefore = traffic.ledger.unavailable.load();
    const auto lost = Clock::now();
    traffic.ledger.faulty = true;
    pg1.kill();
    // The instances notice: writes get 503 until a primary answers.
    const bool noticed = eventually([&] { return readiness(*d1, "database") == "unavailable"; }, 30s, 10ms);
    const std::int64_t noticedMs = millisSince(lost);
    // Nothing can be acknowledged between the loss and the promotion (the
    // standby refuses writes): the first acknowledgement after the
    // promotion began is the service back, watched for while it runs.
    const auto ackedBeforePromotion = traffic.ledger.acknowledged.load();
    const std::int64_t promotingMs = millisSince(lost);
    std::atomic<std::int64_t> firstWriteMs{-1};
    std::thread watch([&] {
        if (eventually([&] { return traffic.ledger.acknowledged > ackedBeforePromotion; }, 60s, 1ms))
            firstWriteMs = millisSince(lost);
    });
    pg2.promote();
    const std::int64_t promotedMs = millisSince(lost);
    watch.join();
    const std::int64_t back1 = awaitReady(*d1, "database", lost, 60s);
    const std::int64_t back2 = awaitReady(*d2, "database", lost, 60s);
    traffic.ledger.faulty = false;
    const auto unavailableDuring = traffic.ledger.unavailable.load() - unavailableBefore;
    traffic.awaitAcks(phaseAcks(), "after the failover");

    std::ostringstream figures;
    figures << " noticed_ms=" << noticedMs << " promotion_began_ms=" << promotingMs << " promoted_ms=" << promotedMs
            << " first_write_ms=" << firstWriteMs << " first_write_after_promotion_began_ms=" << firstWriteMs - promotingMs
            << " both_ready_ms=" << std::max(back1, back2)
            << " answered_503_during_switch=" << unavailableDuring;
    finish(name, traffic, *d1, pg2.uri(), figures.str(), !synchronous);
    CHECK(noticed);
    CHECK(firstWriteMs >= 0);
    CHECK(unavailableDuring > 0);
}

}  // namespace

TEST_CASE("The PostgreSQL primary is lost and its synchronous standby promoted: nothing acknowledged is lost",
          "[cluster][postgresql]")
{
    failover(true);
}

TEST_CASE("The PostgreSQL primary is lost and its asynchronous standby promoted: what is lost is counted",
          "[cluster][postgresql]")
{
    failover(false);
}

namespace {

// A thread on another host (its network namespace): for the clients of a
// cut instance, which reach it only through the host's own loopback.
template <typename F>
std::thread onHost(const std::string& netns, F body)
{
    return std::thread([netns, body] {
        const int fd = ::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) return;  // no answers recorded: the test fails
        ::close(fd);
        body();
    });
}

}  // namespace

namespace {

// Leases and outbox claims d1 holds in the database, unexpired.
bool databaseHolds(const PostgresqlServer& pg)
{
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    auto rows = postgresqlQuery(pg.uri(), "SELECT COUNT(*) FROM messages WHERE holder = 'd1' AND state IN "
                                          "('leased', 'publishing') AND due_at > " + std::to_string(now));
    return rows.empty() || rows[0] != "0";
}

// Connections RabbitMQ keeps for d1 (with their unacked deliveries):
// established TCP connections from d1's address on the broker's host (ss
// answers in milliseconds; rabbitmqctl takes a second).
bool brokerHolds(const Hosts& hosts, const std::string& address)
{
    return !mustRun(hosts.on("r1") + " ss -Htn state established dst " + address).empty();
}

void cutLink(bool rabbit)
{
    TempDir dir;
    std::vector<std::string> names{"pg", "d1", "d2"};
    if (rabbit) names.emplace_back("r1");
    Hosts hosts(dir.path() + "/hosts", names);
    PostgresqlServer pg(hosts, "pg");
    std::unique_ptr<cluster::RabbitMqNode> broker;
    auto defines = commonDefines();
    defines.emplace_back("store.kind=postgresql");
    defines.push_back("store.postgresql.uri=" + pg.uri());
    // With RabbitMQ, what a cut-off instance holds goes back when RabbitMQ
    // gives up on its connections: the heartbeat, a third of the lease, at
    // least 2 s. A lease of 9 s has a heartbeat of 3 s.
    const Millis lease = rabbit ? 9s : 4s;
    std::erase_if(defines, [](const std::string& d) { return d.rfind("broker.lease=", 0) == 0; });
    defines.push_back("broker.lease=" + std::to_string(lease.count()) + "ms");
    if (rabbit) {
        broker = std::make_unique<cluster::RabbitMqNode>(hosts, "r1");
        defines.emplace_back("broker.kind=rabbitmq");
        defines.push_back("broker.rabbitmq.uri=" + broker->uri());
    }
    auto d1 = instance(hosts, "d1", defines);
    auto d2 = instance(hosts, "d2", defines);
    if (rabbit)
        for (const Daemon* d : {d1.get(), d2.get()}) awaitReady(*d, "broker", Clock::now(), 60s);
    const std::string name = rabbit ? "cut-link-rabbitmq" : "cut-link";

    Traffic traffic({d1.get(), d2.get()}, name);
    traffic.awaitAcks(phaseAcks(), "before the cut");
    // d1 holds work when its link goes: frozen (SIGSTOP) the moment the
    // database shows it holding some (its batches hold leases for
    // milliseconds), cut, then let run on, cut off.
    {
        INFO("d1 never held a lease or a claim");
        REQUIRE(eventually(
            [&] {
                if (!databaseHolds(pg)) return false;
                d1->signal(SIGSTOP);
                if (databaseHolds(pg)) return true;
                d1->signal(SIGCONT);
                return false;
            },
            30s, 1ms));
    }
    const auto cutAt = Clock::now();
    traffic.ledger.faulty = true;
    hosts.cut("d1");
    d1->signal(SIGCONT);

    // Its own clients, on its host: answered 503 (or 202 before it noticed),
    // never left hanging. What it accepted joins the ledger.
    std::vector<std::pair<int, std::int64_t>> answers;  // status (0: no answer), milliseconds
    Ledger& ledger = traffic.ledger;
    std::thread own = onHost(d1->placement().netns, [&answers, &ledger, lease, port = d1->port()] {
        HttpClient c("127.0.0.1", port);
        c.setTimeout(30s);
        const auto until = Clock::now() + std::max<Millis>(12s, lease + 4s);
        for (int n = 0; Clock::now() < until; ++n) {
            const std::string key = "own-client-" + std::to_string(n);
            const auto sent = Clock::now();
            int status = 0;
            try {
                auto r = c.postOrder(orderJson(key + "@crash.example"), {{"Idempotency-Key", key}});
                status = r.status;
                if (status == 202)
                    ledger.addOrder({key, getString(r.jsonObject(), "id").value_or(""), 2500, 1}, Plan::NoPayment);
            } catch (const std::exception&) {
            }
            answers.emplace_back(status, millisSince(sent));
            std::this_thread::sleep_until(sent + 200ms);  // a client's pace: a request every 200 ms at most
        }
    });
    // Meanwhile, from this machine: what d1 held runs out and d2 takes it.
    std::int64_t databaseMs = -1, brokerMs = rabbit ? -1 : 0;
    eventually(
        [&] {
            if (databaseMs < 0 && !databaseHolds(pg)) databaseMs = millisSince(cutAt);
            if (brokerMs < 0 && !brokerHolds(hosts, d1->host())) brokerMs = millisSince(cutAt);
            return databaseMs >= 0 && brokerMs >= 0;
        },
        lease + 10s, 10ms);
    const std::int64_t takenOverMs = databaseMs < 0 || brokerMs < 0 ? -1 : std::max(databaseMs, brokerMs);
    own.join();
    hosts.mend("d1");
    const std::int64_t cutMs = millisSince(cutAt);
    const auto mended = Clock::now();
    const std::int64_t rejoinedMs = awaitReady(*d1, "database", mended, 30s);
    traffic.ledger.faulty = false;
    traffic.awaitAcks(phaseAcks(), "after the link came back");

    int unavailable = 0, accepted = 0, unanswered = 0;
    std::int64_t slowest = 0;
    for (const auto& [status, ms] : answers) {
        unavailable += status == 503;
        accepted += status == 202;
        unanswered += status == 0;
        slowest = std::max(slowest, ms);
    }
    std::ostringstream figures;
    figures << " cut_ms=" << cutMs << " taken_over_ms=" << takenOverMs << " leases_released_ms=" << databaseMs;
    if (rabbit) figures << " broker_connections_closed_ms=" << brokerMs;
    figures << " rejoined_ms=" << rejoinedMs
            << " own_clients_503=" << unavailable << " own_clients_202=" << accepted
            << " own_clients_unanswered=" << unanswered << " own_clients_slowest_ms=" << slowest;
    finish(name, traffic, *d2, pg.uri(), figures.str(), false);
    CHECK(takenOverMs >= 0);
    // What it held waited for its lease to run out: the test measured a
    // takeover, not work that ended by itself.
    CHECK(databaseMs >= lease.count() - 1000);
    // Within the lease, as SPEC.md has it (and half a second for this
    // test's look on a busy machine).
    CHECK(takenOverMs <= lease.count() + 500);
    CHECK(unanswered == 0);
    CHECK(unavailable > 0);
    CHECK(slowest < 10000);
}

}  // namespace

TEST_CASE("One instance's link is cut for longer than the lease: its work is taken over, its clients get 503",
          "[cluster][cut]")
{
    cutLink(false);
}

TEST_CASE("One instance's link is cut, with RabbitMQ: its deliveries go to the other, its clients get 503",
          "[cluster][cut][rabbitmq]")
{
    cutLink(true);
}
