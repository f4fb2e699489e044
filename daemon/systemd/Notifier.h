#pragma once

#include <chrono>
#include <optional>
#include <string>

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

}  // namespace orderpay::systemd
