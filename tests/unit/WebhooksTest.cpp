// The webhook parts that need no network: Standard Webhooks signing checked
// against the specification's published example, the address policy (the
// SSRF guard), the retry schedule and Retry-After, the webhooks.* keys.
#include "app/Config.h"
#include "webhooks/AddressPolicy.h"
#include "webhooks/Dispatcher.h"
#include "webhooks/Pacer.h"
#include "webhooks/Signature.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>

using namespace orderpay;
using namespace std::chrono_literals;

namespace {

bool isPublic(const std::string& text)
{
    sockaddr_in6 v6{};
    sockaddr_in v4{};
    if (::inet_pton(AF_INET, text.c_str(), &v4.sin_addr) == 1) {
        v4.sin_family = AF_INET;
        return webhooks::isPublicAddress(reinterpret_cast<sockaddr*>(&v4));
    }
    REQUIRE(::inet_pton(AF_INET6, text.c_str(), &v6.sin6_addr) == 1);
    v6.sin6_family = AF_INET6;
    return webhooks::isPublicAddress(reinterpret_cast<sockaddr*>(&v6));
}

}  // namespace

TEST_CASE("signatures match the Standard Webhooks specification's published example", "[webhooks]")
{
    // From the specification's reference libraries' tests (e.g.
    // libraries/python/tests/test_webhooks.py, test_sign_function).
    CHECK(webhooks::sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                         R"({"test": 2432232314})") == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    // Any byte of the input changes it.
    CHECK(webhooks::sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331,
                         R"({"test": 2432232314})") != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    CHECK_THROWS_AS(webhooks::sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "id", 1, "{}"), std::invalid_argument);
}

TEST_CASE("a new secret is whsec_ and 32 random bytes in base64, never the same twice", "[webhooks]")
{
    const std::string a = webhooks::newSecret();
    const std::string b = webhooks::newSecret();
    CHECK(a.rfind("whsec_", 0) == 0);
    CHECK(a.size() == 6 + 44);  // base64 of 32 bytes
    CHECK(a != b);
    CHECK_NOTHROW(webhooks::sign(a, "evt_1", 1, "{}"));
}

TEST_CASE("only public addresses pass the SSRF guard", "[webhooks]")
{
    for (const char* inside : {"127.0.0.1", "127.255.0.9", "10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.1.1",
                               "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255",
                               "198.18.0.1", "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
                               "::ffff:127.0.0.1", "::ffff:10.1.2.3", "64:ff9b::a00:1"}) {
        INFO(inside);
        CHECK_FALSE(isPublic(inside));
    }
    for (const char* outside : {"203.0.113.10", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:4860:4860::8888",
                                "::ffff:8.8.8.8", "64:ff9b::808:808"}) {
        INFO(outside);
        CHECK(isPublic(outside));
    }
}

TEST_CASE("endpoint URLs are checked when registered", "[webhooks]")
{
    using webhooks::checkEndpointUrl;
    CHECK_FALSE(checkEndpointUrl("https://203.0.113.10/hooks", false).has_value());
    CHECK_FALSE(checkEndpointUrl("https://[2001:4860:4860::8888]:8443/x?y=1", false).has_value());
    CHECK(checkEndpointUrl("http://203.0.113.10/hooks", false).value_or("").find("https") != std::string::npos);
    CHECK(checkEndpointUrl("https://127.0.0.1/x", false).value_or("").find("127.0.0.1") != std::string::npos);
    CHECK(checkEndpointUrl("https://localhost/x", false).has_value());  // resolves to loopback
    CHECK(checkEndpointUrl("https://[::1]/x", false).has_value());
    CHECK(checkEndpointUrl("https://u:p@203.0.113.10/x", false).has_value());
    CHECK(checkEndpointUrl("https://203.0.113.10/x#frag", false).has_value());
    CHECK(checkEndpointUrl("ftp://203.0.113.10/x", true).has_value());
    CHECK(checkEndpointUrl("not a url", true).has_value());
    CHECK(checkEndpointUrl("https:///nohost", true).has_value());
    CHECK(checkEndpointUrl("", true).has_value());
    CHECK(checkEndpointUrl("https://203.0.113.10/" + std::string(2100, 'a'), true).has_value());
    // Allowed: http:// and private addresses, not resolved.
    CHECK_FALSE(checkEndpointUrl("http://127.0.0.1:9000/x", true).has_value());
    CHECK_FALSE(checkEndpointUrl("https://10.0.0.5/x", true).has_value());
}

TEST_CASE("the retry schedule, and Retry-After in seconds or as a date", "[webhooks]")
{
    using namespace std::chrono;
    CHECK(webhooks::retryDelay(1) == 5s);
    CHECK(webhooks::retryDelay(2) == 5min);
    CHECK(webhooks::retryDelay(3) == 30min);
    CHECK(webhooks::retryDelay(4) == 2h);
    CHECK(webhooks::retryDelay(5) == 5h);
    CHECK(webhooks::retryDelay(6) == 10h);
    CHECK(webhooks::retryDelay(40) == 10h);
    const std::int64_t now = 1614265330000;  // Thu, 25 Feb 2021 15:02:10 GMT
    CHECK(webhooks::parseRetryAfter("120", now) == milliseconds(120000));
    CHECK(webhooks::parseRetryAfter(" 0 ", now) == milliseconds(1000));           // at least 1 s
    CHECK(webhooks::parseRetryAfter("999999", now) == milliseconds(36000000));    // at most 10 h
    CHECK(webhooks::parseRetryAfter("Thu, 25 Feb 2021 15:03:10 GMT", now) == milliseconds(60000));
    CHECK_FALSE(webhooks::parseRetryAfter("soon", now).has_value());
    CHECK_FALSE(webhooks::parseRetryAfter("-5", now).has_value());
}

TEST_CASE("webhooks.* keys: defaults and checks", "[config][webhooks]")
{
    const Settings s = Config::load(ORDERPAY_CONFIG_PATH, true, {});
    CHECK(s.webhooks.timeout == 10s);
    CHECK(s.webhooks.maxAge == 72h);
    CHECK(s.webhooks.concurrency == 16);
    CHECK_FALSE(s.webhooks.allowPrivateNetworks);
    CHECK(s.webhooks.caFile.empty());
    const Settings set = Config::load(ORDERPAY_CONFIG_PATH, true,
                                      {{"webhooks.max_age", "2d"}, {"webhooks.timeout", "500ms"},
                                       {"webhooks.allow_private_networks", "true"}});
    CHECK(set.webhooks.maxAge == 48h);
    CHECK(set.webhooks.timeout == 500ms);
    CHECK(set.webhooks.allowPrivateNetworks);
    for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
             {"webhooks.timeout", "10m"}, {"webhooks.timeout", "0"}, {"webhooks.concurrency", "0"},
             {"webhooks.max_age", "soon"}, {"webhooks.ca_file", "/nonexistent/ca.pem"},
             {"webhooks.allow_private_networks", "maybe"}}) {
        INFO(key << " = " << value);
        CHECK_THROWS_AS(Config::load(ORDERPAY_CONFIG_PATH, true, {{key, value}}), ConfigError);
    }
}

TEST_CASE("deliveries yield while the writers are saturated: at most the pacer's rate a second, full speed after",
          "[webhooks]")
{
    webhooks::Pacer pacer(2000);
    std::int64_t now = 1'000'000;
    std::uint64_t busy = 0;  // the writers' busy microseconds so far
    // One writer busy `share` of each 100 ms interval, for `intervals`.
    auto load = [&](double share, int intervals) {
        for (int i = 0; i < intervals; ++i) {
            now += webhooks::Pacer::kWatchEveryMs;
            busy += static_cast<std::uint64_t>(share * 100'000);
            pacer.watch(now, busy, 1);
        }
    };
    // Starts taken in one simulated second, trying every millisecond, the
    // writers as busy as `share` meanwhile.
    auto startsInASecond = [&](double share) {
        int started = 0;
        for (int ms = 0; ms < 1000; ++ms) {
            ++now;
            busy += static_cast<std::uint64_t>(share * 1000);
            pacer.watch(now, busy, 1);
            while (pacer.take(now)) {
                if (++started > 100'000) return started;  // not paced at all
            }
        }
        return started;
    };

    pacer.watch(now, busy, 1);
    load(0.5, 3);
    CHECK_FALSE(pacer.yielding());
    CHECK(pacer.lastShare() == Approx(0.5));
    CHECK(pacer.take(now));
    CHECK(pacer.waitMs(now, 100, 100) == 100);

    load(0.95, 1);
    REQUIRE(pacer.yielding());
    const int paced = startsInASecond(0.95);
    CHECK(paced >= 1900);
    CHECK(paced <= 2000 + 200);  // the rate, and at most one burst (100 ms) over it
    // Out of tokens: the wait is until a few may start, within the longest.
    while (pacer.take(now)) {
    }
    const int wait = pacer.waitMs(now, 100, 100);
    CHECK(wait >= 1);
    CHECK(wait <= 10);
    CHECK(pacer.waitMs(now, 0, 100) == 100);  // nothing waits: no reason to wake

    // Between the two thresholds it keeps yielding (no flapping at the edge)...
    load(0.8, 2);
    CHECK(pacer.yielding());
    // ... and under the lower one deliveries go at full speed again.
    load(0.6, 1);
    CHECK_FALSE(pacer.yielding());
    CHECK(startsInASecond(0.6) > 100'000);

    // Several writers: the share is per writer (two, each 95 % busy).
    webhooks::Pacer shared(2000);
    shared.watch(now, 0, 2);
    shared.watch(now + 100, 190'000, 2);
    CHECK(shared.yielding());
    CHECK(shared.lastShare() == Approx(0.95));
}
