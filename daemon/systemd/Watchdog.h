#pragma once

#include "broker/Broker.h"
#include "common/PeriodicThread.h"
#include "http/HttpServer.h"
#include "work/ConsumerTask.h"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace orderpay::systemd {

/// Keeps systemd informed: STATUS= every couple of seconds, and WATCHDOG=1
/// at half of WATCHDOG_USEC, but only while the daemon is healthy: every
/// HTTP event loop and the acceptor go round, and every worker has made
/// progress (or polled its idle queue) recently. A wedged thread stops the
/// feeding, and systemd restarts the service. A broker or database that is
/// away does not: the daemon is healthy and says so in /health/ready.
///
/// Nothing it does waits: it reads heartbeats and the broker's last status.
class Watchdog {
public:
    Watchdog(const http::HttpServer& server, std::vector<const ConsumerTask*> workers, const Broker& broker);
    ~Watchdog();
    Watchdog(const Watchdog&) = delete;
    Watchdog& operator=(const Watchdog&) = delete;

    void start();
    void stop();

    /// Why the daemon is not healthy now, or empty if it is.
    std::string problem() const;
    /// The STATUS= line: "queued 3 · processing 1 · broker ok".
    std::string statusLine() const;

private:
    void tick();

    const http::HttpServer& server_;
    std::vector<const ConsumerTask*> workers_;
    const Broker& broker_;
    const std::optional<std::chrono::microseconds> interval_;  // of the pings, if systemd wants them
    std::chrono::milliseconds stallLimit_;
    // The thread's own (tick() runs on it alone).
    std::string lastStatus_, lastProblem_;
    std::chrono::steady_clock::time_point nextFeed_;
    PeriodicThread thread_;
};

}  // namespace orderpay::systemd
