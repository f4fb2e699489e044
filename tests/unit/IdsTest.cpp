#include "domain/Ids.h"

#include <catch2/catch.hpp>

#include <set>

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
