#include "systemd/Watchdog.h"

#include "domain/Clock.h"
#include "logging/Log.h"
#include "systemd/Notifier.h"

namespace orderpay::systemd {
namespace {

/// How often the watchdog looks: every ping's interval, at most 2 s (STATUS=).
std::chrono::milliseconds tickFor(const std::optional<std::chrono::microseconds>& interval)
{
    if (!interval) return std::chrono::seconds(2);
    return std::min<std::chrono::milliseconds>(std::chrono::duration_cast<std::chrono::milliseconds>(*interval),
                                               std::chrono::seconds(2));
}

}  // namespace

Watchdog::Watchdog(const http::HttpServer& server, std::vector<const ConsumerTask*> workers, const Broker& broker)
    : server_(server),
      workers_(std::move(workers)),
      broker_(broker),
      interval_(watchdogInterval()),
      // A worker polls its queues at least every half second and marks
      // progress after each batch (a batch takes milliseconds: no worker
      // waits out a step, that is a timer), and an event loop goes round at
      // least every 100 ms; silence for this long means stuck.
      stallLimit_(std::max<std::chrono::milliseconds>(
          std::chrono::seconds(3), interval_ ? std::chrono::duration_cast<std::chrono::milliseconds>(*interval_ * 2)
                                             : std::chrono::milliseconds(0))),
      thread_("watchdog", tickFor(interval_), [this] { tick(); })
{
}

Watchdog::~Watchdog() { stop(); }

void Watchdog::start()
{
    nextFeed_ = std::chrono::steady_clock::now();
    thread_.start();
}

void Watchdog::stop() { thread_.stop(); }

std::string Watchdog::problem() const
{
    const std::int64_t now = clock::steadyMillis();
    for (const ConsumerTask* w : workers_) {
        if (now - w->lastProgressMs() > stallLimit_.count()) {
            return "worker " + w->name() + " has made no progress for over " +
                   std::to_string(stallLimit_.count() / 1000) + " s";
        }
    }
    return server_.stalled(stallLimit_);
}

std::string Watchdog::statusLine() const
{
    const BrokerStatus broker = broker_.status();
    // Queued: orders waiting to start. Processing: orders being started
    // now, and those whose step is waiting for its time (each has its
    // timer, an order-steps message).
    std::int64_t queued = 0, inFlight = 0;
    if (const auto it = broker.depths.find(kOrdersQueue); it != broker.depths.end()) {
        queued = it->second.ready + it->second.delayed;
        inFlight = it->second.inFlight;
    }
    if (const auto it = broker.depths.find(kOrderStepsQueue); it != broker.depths.end())
        inFlight += it->second.ready + it->second.delayed + it->second.inFlight;
    return "queued " + std::to_string(queued) + " · processing " + std::to_string(inFlight) + " · broker " +
           std::string(toString(broker.state));
}

void Watchdog::tick()
{
    static Poco::Logger& log = Poco::Logger::get("orderpay.systemd");
    const std::string now = statusLine();
    if (now != lastStatus_) status(lastStatus_ = now);
    if (!interval_ || std::chrono::steady_clock::now() < nextFeed_) return;
    const std::string p = problem();
    if (p.empty()) {
        watchdog();
        nextFeed_ = std::chrono::steady_clock::now() + *interval_;
        if (!lastProblem_.empty()) logLine(log, Poco::Message::PRIO_NOTICE, "healthy again; feeding the systemd watchdog");
    } else if (p != lastProblem_) {
        logLine(log, Poco::Message::PRIO_CRITICAL, "not feeding the systemd watchdog: " + p);
    }
    lastProblem_ = p;
}

}  // namespace orderpay::systemd
