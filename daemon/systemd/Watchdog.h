#pragma once

#include "broker/Broker.h"
#include "work/ConsumerTask.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace orderpay::systemd {

/// Keeps systemd informed: STATUS= every couple of seconds, and WATCHDOG=1
/// at half of WATCHDOG_USEC, but only while the daemon is healthy: the HTTP
/// server answers a real request and every worker has made progress (or
/// polled its idle queue) recently. A wedged worker stops the feeding, and
/// systemd restarts the service.
class Watchdog {
public:
    Watchdog(std::string httpHost, std::uint16_t httpPort, std::vector<const ConsumerTask*> workers, Broker& broker);
    ~Watchdog();

    void start();
    void stop();

    /// Why the daemon is not healthy now, or empty if it is.
    std::string problem() const;
    /// The STATUS= line: "queued 3 · processing 1 · broker connected".
    std::string statusLine() const;

private:
    void run();

    std::string host_;
    std::uint16_t port_;
    std::vector<const ConsumerTask*> workers_;
    Broker& broker_;
    std::chrono::milliseconds stallLimit_;

    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace orderpay::systemd
