#include "systemd/Notifier.h"

#include "NotifySocket.h"
#include "TempDir.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <csignal>
#include <cstdlib>

#include <pthread.h>

using namespace orderpay;
using namespace std::chrono_literals;

namespace {

/// NOTIFY_SOCKET set for the scope of a test, as systemd sets it.
struct NotifyEnvironment {
    explicit NotifyEnvironment(const std::string& path) { ::setenv("NOTIFY_SOCKET", path.c_str(), 1); }
    ~NotifyEnvironment() { ::unsetenv("NOTIFY_SOCKET"); }
};

}  // namespace

TEST_CASE("start-up extends systemd's start timeout at once and every interval until stopped", "[systemd]")
{
    test::TempDir dir;
    const std::string path = dir.file("notify.sock");
    test_support::NotifySocket notify(path);
    NotifyEnvironment environment(path);

    const std::string extend = "EXTEND_TIMEOUT_USEC=60000";  // three intervals of 20 ms
    systemd::StartupKeepAlive starting(20ms);
    notify.drain();
    CHECK(notify.count(extend) >= 1);  // sent before the constructor returned
    CHECK(notify.waitFor(extend, 4, 5s));
    starting.stop();
    notify.drain();
    const int sent = notify.count(extend);
    // Stopped: no extension within five more intervals.
    CHECK_FALSE(notify.waitFor(extend, sent + 1, 100ms));
    CHECK(notify.count("EXTEND_TIMEOUT_USEC=", true) == sent);
    CHECK_FALSE(starting.ended());
}

TEST_CASE("start-up stops extending systemd's start timeout after its limit", "[systemd]")
{
    test::TempDir dir;
    const std::string path = dir.file("notify.sock");
    test_support::NotifySocket notify(path);
    NotifyEnvironment environment(path);

    systemd::StartupKeepAlive starting(10ms, 30ms);
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!starting.ended() && std::chrono::steady_clock::now() < deadline) notify.waitFor("-", 1, 10ms);
    REQUIRE(starting.ended());
    notify.drain();
    // At once, then at most one per 10 ms within the 30 ms.
    const int sent = notify.count("EXTEND_TIMEOUT_USEC=30000");
    CHECK(sent >= 1);
    CHECK(sent <= 4);
    CHECK_FALSE(notify.waitFor("EXTEND_TIMEOUT_USEC=30000", sent + 1, 100ms));
}

TEST_CASE("start-up stops extending systemd's timeout once a stop is requested", "[systemd]")
{
    test::TempDir dir;
    const std::string path = dir.file("notify.sock");
    test_support::NotifySocket notify(path);
    NotifyEnvironment environment(path);

    std::atomic<bool> stop{false};
    systemd::StartupKeepAlive starting(10ms, 1h, [&stop] { return stop.load(); });
    REQUIRE(notify.waitFor("EXTEND_TIMEOUT_USEC=30000", 2, 5s));
    stop = true;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!starting.ended() && std::chrono::steady_clock::now() < deadline) notify.waitFor("-", 1, 10ms);
    REQUIRE(starting.ended());
    notify.drain();
    const int sent = notify.count("EXTEND_TIMEOUT_USEC=30000");
    CHECK_FALSE(notify.waitFor("EXTEND_TIMEOUT_USEC=30000", sent + 1, 100ms));
}

TEST_CASE("a stop signal held back during start-up counts as a stop request", "[systemd]")
{
    // Held back in this thread only, as the daemon holds them back in all of
    // its threads while it starts, then taken without being delivered.
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    REQUIRE(pthread_sigmask(SIG_BLOCK, &term, &old) == 0);
    CHECK_FALSE(systemd::stopSignalPending());
    REQUIRE(pthread_kill(pthread_self(), SIGTERM) == 0);
    CHECK(systemd::stopSignalPending());
    const timespec none{0, 0};
    CHECK(sigtimedwait(&term, nullptr, &none) == SIGTERM);
    CHECK_FALSE(systemd::stopSignalPending());
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

