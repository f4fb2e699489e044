#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace orderpay::systemd {

/// Every sd_notify message orderpayd sends, in one place. Each does nothing
/// when the daemon is not run by systemd (no NOTIFY_SOCKET).
void ready();
void reloading();
void stopping();
void status(const std::string& line);
void watchdog();

/// Half of WATCHDOG_USEC, the interval at which to feed the watchdog, if
/// systemd asked for one.
std::optional<std::chrono::microseconds> watchdogInterval();

/// True when stderr is connected to the journal (JOURNAL_STREAM).
bool stderrIsJournal();

/// True when SIGTERM, SIGINT or SIGQUIT is pending: the daemon blocks them
/// during start-up and acts on them once it has started.
bool stopSignalPending();

/// While the daemon starts (opening and migrating the database may take
/// long: an upgrade may rewrite a large one), tells systemd every `every`
/// that start-up is still going (EXTEND_TIMEOUT_USEC, three intervals
/// ahead), at once and until stop(), so TimeoutStartSec does not kill the
/// migration and restart it into the same migration forever. Gives up after
/// `limit`, so a start that hangs still fails, and as soon as a stop signal
/// is pending (an extension would stretch TimeoutStopSec too). Nothing (no
/// thread) without NOTIFY_SOCKET.
class StartupKeepAlive {
public:
    explicit StartupKeepAlive(std::chrono::milliseconds every = std::chrono::seconds(5),
                              std::chrono::milliseconds limit = std::chrono::hours(1),
                              std::function<bool()> stopRequested = stopSignalPending);
    ~StartupKeepAlive();
    StartupKeepAlive(const StartupKeepAlive&) = delete;
    StartupKeepAlive& operator=(const StartupKeepAlive&) = delete;

    /// Sends no more extensions; returns once none can be on its way.
    void stop();
    /// True once the extensions ended by themselves: `limit` passed, or a
    /// stop was requested.
    bool ended() const;

private:
    std::chrono::milliseconds every_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    bool ended_ = false;
    std::thread thread_;
};

}  // namespace orderpay::systemd
