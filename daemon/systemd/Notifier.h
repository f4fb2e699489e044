#pragma once

#include <chrono>
#include <condition_variable>
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

/// While the daemon does start-up work that may take long (opening and
/// migrating the database: an upgrade may rewrite a large one), tells
/// systemd every `every` that start-up is still going (EXTEND_TIMEOUT_USEC,
/// three intervals ahead), at once and until stop(), so TimeoutStartSec does
/// not kill the migration and restart it into the same migration forever.
/// Gives up after `limit`, so a start that hangs still fails. Nothing (no
/// thread) without NOTIFY_SOCKET.
class StartupKeepAlive {
public:
    explicit StartupKeepAlive(std::chrono::milliseconds every = std::chrono::seconds(5),
                              std::chrono::milliseconds limit = std::chrono::hours(1));
    ~StartupKeepAlive();
    StartupKeepAlive(const StartupKeepAlive&) = delete;
    StartupKeepAlive& operator=(const StartupKeepAlive&) = delete;

    /// Sends no more extensions; returns once none can be on its way.
    void stop();
    /// True once `limit` has passed and the extensions ended by themselves.
    bool expired() const;

private:
    std::chrono::milliseconds every_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    bool expired_ = false;
    std::thread thread_;
};

}  // namespace orderpay::systemd
