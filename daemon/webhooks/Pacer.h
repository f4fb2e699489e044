#pragma once

#include <cstddef>
#include <cstdint>

namespace orderpay::webhooks {

/// When webhook deliveries yield to the API, and how fast they go then.
/// The database's writers are the API's bottleneck: while they are
/// saturated (busy over kSaturated of the last watch interval), the API's
/// writes queue for them, and every delivery's settlement and CPU time
/// comes out of the accepted rate. So while they are, at most `rate`
/// deliveries start a second (a token bucket of 100 ms); once they are
/// under kRelieved, deliveries go as fast as their slots allow.
class Pacer {
public:
    static constexpr std::int64_t kWatchEveryMs = 100;
    static constexpr double kSaturated = 0.9;
    static constexpr double kRelieved = 0.75;

    explicit Pacer(int ratePerSecond) : rate_(ratePerSecond), burst_(ratePerSecond / 10.0) {}

    /// Looks at the writers, at most every kWatchEveryMs: `busyMicros` is
    /// their busy time so far (all of them together), `writers` how many.
    void watch(std::int64_t nowMs, std::uint64_t busyMicros, std::size_t writers);
    bool due(std::int64_t nowMs) const { return nowMs - watchedAt_ >= kWatchEveryMs; }
    bool yielding() const { return yielding_; }
    /// The writers' busy share over the last interval watched.
    double lastShare() const { return share_; }

    /// Whether one more delivery may start now (always, unless yielding).
    bool take(std::int64_t nowMs);
    /// How long the dispatcher may wait before `waiting` deliveries (or a
    /// few of them) may start: `longest` when not yielding.
    int waitMs(std::int64_t nowMs, std::size_t waiting, int longest) const;

private:
    double tokensAt(std::int64_t nowMs) const;

    const int rate_;
    const double burst_;
    std::int64_t watchedAt_ = 0;
    std::uint64_t watchedBusy_ = 0;
    double share_ = 0;
    bool yielding_ = false;
    double tokens_ = 0;
    std::int64_t tokensAt_ = 0;
};

}  // namespace orderpay::webhooks
