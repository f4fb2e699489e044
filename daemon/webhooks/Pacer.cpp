#include "webhooks/Pacer.h"

#include <algorithm>

namespace orderpay::webhooks {

void Pacer::watch(std::int64_t nowMs, std::uint64_t busyMicros, std::size_t writers)
{
    if (!due(nowMs)) return;
    if (watchedAt_ > 0 && nowMs > watchedAt_) {
        share_ = static_cast<double>(busyMicros - watchedBusy_) / 1000.0 / static_cast<double>(nowMs - watchedAt_) /
                 static_cast<double>(std::max<std::size_t>(1, writers));
        if (!yielding_ && share_ >= kSaturated) {
            yielding_ = true;
            tokens_ = 0;
            tokensAt_ = nowMs;
        } else if (yielding_ && share_ < kRelieved) {
            yielding_ = false;
        }
    }
    watchedAt_ = nowMs;
    watchedBusy_ = busyMicros;
}

double Pacer::tokensAt(std::int64_t nowMs) const
{
    return std::min(burst_, tokens_ + static_cast<double>(std::max<std::int64_t>(0, nowMs - tokensAt_)) * rate_ / 1000.0);
}

bool Pacer::take(std::int64_t nowMs)
{
    if (!yielding_) return true;
    tokens_ = tokensAt(nowMs);
    tokensAt_ = std::max(tokensAt_, nowMs);
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
}

int Pacer::waitMs(std::int64_t nowMs, std::size_t waiting, int longest) const
{
    if (!yielding_ || waiting == 0) return longest;
    // Until a few may start together (a wake-up per start costs more than
    // the start), or the one waiting.
    const double wanted = std::min(burst_ / 20, static_cast<double>(waiting));
    const double missing = std::max(0.0, wanted - tokensAt(nowMs));
    return std::clamp(static_cast<int>(missing * 1000.0 / rate_) + 1, 1, longest);
}

}  // namespace orderpay::webhooks
