#include "domain/Clock.h"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace orderpay::clock {

std::int64_t nowMillis()
{
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::int64_t steadyMillis()
{
    using namespace std::chrono;
    return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

std::string rfc3339(std::int64_t unixMillis)
{
    // The writer stamps most rows of a transaction with the same
    // millisecond: formatting it once per thread and millisecond spares a
    // gmtime_r and an snprintf per row (~10 per processed order).
    thread_local std::int64_t lastMillis = -1;
    thread_local std::string last;
    if (unixMillis == lastMillis) return last;
    const std::time_t seconds = static_cast<std::time_t>(unixMillis / 1000);
    std::tm tm{};
    gmtime_r(&seconds, &tm);
    char buf[64];  // room for any int the compiler imagines in each field
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(unixMillis % 1000));
    last = buf;
    lastMillis = unixMillis;
    return last;
}

}  // namespace orderpay::clock
