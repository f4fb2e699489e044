#include "systemd/Notifier.h"

#include "NotifySocket.h"
#include "TempDir.h"

#include <catch2/catch.hpp>

#include <cstdlib>

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
    // stop() returned: nothing more is on its way.
    notify.drain();
    CHECK(notify.count(extend) == sent);
    CHECK(notify.count("EXTEND_TIMEOUT_USEC=", true) == sent);
}

TEST_CASE("start-up stops extending systemd's start timeout after its limit", "[systemd]")
{
    test::TempDir dir;
    const std::string path = dir.file("notify.sock");
    test_support::NotifySocket notify(path);
    NotifyEnvironment environment(path);

    systemd::StartupKeepAlive starting(10ms, 30ms);
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!starting.expired() && std::chrono::steady_clock::now() < deadline) notify.waitFor("-", 1, 10ms);
    REQUIRE(starting.expired());
    starting.stop();
    notify.drain();
    // At once, then at most one per 10 ms within the 30 ms.
    CHECK(notify.count("EXTEND_TIMEOUT_USEC=30000") >= 1);
    CHECK(notify.count("EXTEND_TIMEOUT_USEC=30000") <= 4);
}

