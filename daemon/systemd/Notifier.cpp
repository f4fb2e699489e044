#include "systemd/Notifier.h"

#include "logging/Log.h"

#include <systemd/sd-daemon.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <sys/stat.h>
#include <time.h>

namespace orderpay::systemd {
namespace {

void notify(const std::string& message)
{
    // unset_environment = 0: the variables stay for the next message.
    sd_notify(0, message.c_str());
}

}  // namespace

void ready() { notify("READY=1\nSTATUS=ready"); }

void reloading()
{
    // Since systemd 253 RELOADING=1 wants MONOTONIC_USEC; older ones ignore it.
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const auto usec = static_cast<unsigned long long>(ts.tv_sec) * 1000000ULL + static_cast<unsigned long long>(ts.tv_nsec) / 1000ULL;
    notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void stopping() { notify("STOPPING=1\nSTATUS=stopping"); }

void status(const std::string& line) { notify("STATUS=" + line); }

void watchdog() { notify("WATCHDOG=1"); }

std::optional<std::chrono::microseconds> watchdogInterval()
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::nullopt;
    return std::chrono::microseconds(usec / 2);
}

StartupKeepAlive::StartupKeepAlive(std::chrono::milliseconds every, std::chrono::milliseconds limit,
                                   std::function<bool()> stopRequested)
    : every_(every)
{
    if (!std::getenv("NOTIFY_SOCKET")) return;
    const std::string extend =
        "EXTEND_TIMEOUT_USEC=" + std::to_string(std::chrono::microseconds(every_ * 3).count());
    notify(extend);
    const auto giveUp = std::chrono::steady_clock::now() + limit;
    thread_ = std::thread([this, extend, giveUp, limit, stopRequested = std::move(stopRequested)] {
        static Poco::Logger& log = Poco::Logger::get("orderpay.systemd");
        std::unique_lock lock(mutex_);
        while (!wake_.wait_for(lock, every_, [this] { return stopping_; })) {
            if (stopRequested()) {
                // An extension would stretch TimeoutStopSec as well.
                ended_ = true;
                logLine(log, Poco::Message::PRIO_NOTICE,
                        "asked to stop while starting: no more start-up time asked of systemd; stopping when "
                        "start-up ends");
                return;
            }
            if (std::chrono::steady_clock::now() >= giveUp) {
                ended_ = true;
                logLine(log, Poco::Message::PRIO_WARNING,
                        "start-up has taken over " + std::to_string(limit.count() / 1000) +
                            " s: no more start-up time asked of systemd");
                return;
            }
            notify(extend);
        }
    });
}

StartupKeepAlive::~StartupKeepAlive() { stop(); }

void StartupKeepAlive::stop()
{
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

bool StartupKeepAlive::ended() const
{
    std::lock_guard lock(mutex_);
    return ended_;
}

bool stopSignalPending()
{
    sigset_t pending;
    sigemptyset(&pending);
    if (sigpending(&pending) != 0) return false;
    return sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1 ||
           sigismember(&pending, SIGQUIT) == 1;
}

bool stderrIsJournal()
{
    // JOURNAL_STREAM is "device:inode" of the stream systemd connected;
    // it counts only if that is still our stderr (not a redirected child).
    const char* env = std::getenv("JOURNAL_STREAM");
    if (!env) return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(env, "%llu:%llu", &dev, &ino) != 2) return false;
    struct stat st {};
    if (fstat(2, &st) != 0) return false;
    return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

}  // namespace orderpay::systemd
