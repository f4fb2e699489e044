#include "domain/Money.h"

#include <catch2/catch.hpp>

#include <limits>

using namespace orderpay;

TEST_CASE("money multiplication refuses to overflow", "[money]")
{
    CHECK(money::multiply(10000, 1'000'000'000) == 10'000'000'000'000);
    CHECK(money::multiply(0, std::numeric_limits<std::int64_t>::max()) == 0);
    CHECK_FALSE(money::multiply(std::numeric_limits<std::int64_t>::max(), 2).has_value());
    CHECK_FALSE(money::multiply(4'000'000'000, 4'000'000'000).has_value());
}

TEST_CASE("money addition refuses to overflow", "[money]")
{
    CHECK(money::add(1250, 1250) == 2500);
    CHECK_FALSE(money::add(std::numeric_limits<std::int64_t>::max(), 1).has_value());
    CHECK(money::add(std::numeric_limits<std::int64_t>::max() - 1, 1) == std::numeric_limits<std::int64_t>::max());
}
