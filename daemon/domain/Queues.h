#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace orderpay {

/// The two queues: an order waiting to be processed, a payment waiting to
/// be settled. Whatever carries them (the embedded queue, RabbitMQ) uses
/// these names.
inline constexpr const char* kOrdersQueue = "orders";
inline constexpr const char* kPaymentsQueue = "payments";

/// How many messages of one queue are where.
struct QueueDepth {
    std::int64_t ready = 0;     // waiting, including those backing off
    std::int64_t inFlight = 0;  // leased to a consumer
    std::int64_t dead = 0;      // dead-lettered
    std::int64_t oldestAgeMs = 0;
};

using QueueDepths = std::map<std::string, QueueDepth>;

}  // namespace orderpay
