#include "domain/Clock.h"

#include <catch2/catch.hpp>

using namespace orderpay;

TEST_CASE("timestamps are RFC 3339 in UTC with milliseconds, also when one is formatted again", "[clock]")
{
    CHECK(clock::rfc3339(0) == "1970-01-01T00:00:00.000Z");
    CHECK(clock::rfc3339(1795772588123) == "2026-11-27T09:43:08.123Z");
    // The same millisecond again (the cached text), then the next ones.
    CHECK(clock::rfc3339(1795772588123) == "2026-11-27T09:43:08.123Z");
    CHECK(clock::rfc3339(1795772588124) == "2026-11-27T09:43:08.124Z");
    CHECK(clock::rfc3339(1795772589000) == "2026-11-27T09:43:09.000Z");
    CHECK(clock::rfc3339(0) == "1970-01-01T00:00:00.000Z");
}
