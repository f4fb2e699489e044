#pragma once

#include <cstdint>
#include <string>

namespace orderpay::clock {

/// Milliseconds since the Unix epoch (wall clock, for stored timestamps).
std::int64_t nowMillis();

/// Milliseconds of the monotonic clock: for intervals and heartbeats, never stored.
std::int64_t steadyMillis();

/// RFC 3339 UTC with milliseconds, e.g. 2026-11-26T10:00:00.123Z.
std::string rfc3339(std::int64_t unixMillis);
inline std::string nowRfc3339() { return rfc3339(nowMillis()); }

}  // namespace orderpay::clock
