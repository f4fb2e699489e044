#include "domain/Ids.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <set>

#include <sys/wait.h>
#include <unistd.h>

using namespace orderpay;

TEST_CASE("ids are prefixed ULIDs, valid and strictly increasing", "[ids]")
{
    std::set<std::string> seen;
    std::string previous;
    for (int i = 0; i < 10000; ++i) {
        const std::string id = ids::newOrderId();
        REQUIRE(ids::isValid(id, "ord_"));
        REQUIRE(id > previous);
        REQUIRE(seen.insert(id).second);
        previous = id;
    }
}

TEST_CASE("ULIDs encode the time first", "[ids]")
{
    std::array<std::uint8_t, 10> zeros{}, ones{};
    ones.fill(0xff);
    CHECK(ids::encodeUlid(0, zeros) == std::string(26, '0'));
    // 2^48 - 1 ms, the largest ULID time, and all random bits set.
    CHECK(ids::encodeUlid(281474976710655ULL, ones) == "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
    CHECK(ids::encodeUlid(1, zeros) == "0000000001" + std::string(16, '0'));
}

TEST_CASE("malformed ids are refused", "[ids]")
{
    const std::string good = ids::newPaymentId();
    CHECK(ids::isValid(good, "pay_"));
    CHECK_FALSE(ids::isValid(good, "ord_"));
    CHECK_FALSE(ids::isValid(good.substr(0, good.size() - 1), "pay_"));
    CHECK_FALSE(ids::isValid("pay_0123456789ABCDEFGHJKMNPQRU", "pay_"));  // U is not Crockford
    CHECK_FALSE(ids::isValid("pay_8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "pay_"));  // over 128 bits
    CHECK_FALSE(ids::isValid("", "pay_"));
}

namespace {

/// The id a child process makes at `millis`, forked from this one.
std::string idFromChild(std::uint64_t millis)
{
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        const std::string id = ids::ulid(millis);
        (void)!::write(fds[1], id.data(), id.size());
        ::_exit(0);
    }
    ::close(fds[1]);
    char buffer[64];
    std::string id;
    for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) > 0;) id.append(buffer, static_cast<std::size_t>(n));
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return id;
}

}  // namespace

TEST_CASE("the random part of an id comes from the kernel, not from a state the process carries", "[ids]")
{
    // Two processes that share their history (forked from this one, which
    // made ids already) make their first id of a later millisecond: from a
    // seeded generator they would make the same one, with the random
    // source they do not.
    ids::newOrderId();
    const std::uint64_t later = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count() + 60'000);
    const std::string a = idFromChild(later), b = idFromChild(later);
    REQUIRE(a.size() == 26);
    REQUIRE(b.size() == 26);
    CHECK(a.substr(0, 10) == b.substr(0, 10));  // the same time
    CHECK(a.substr(10) != b.substr(10));        // not the same randomness
}
