#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace orderpay {

/// The queues: an order waiting to start processing, an order's next
/// processing step (a durable timer: due when the step in progress has
/// taken its time), a payment waiting to be settled. Whatever carries them
/// (the embedded queue, RabbitMQ) uses these names.
inline constexpr const char* kOrdersQueue = "orders";
inline constexpr const char* kOrderStepsQueue = "order-steps";
inline constexpr const char* kPaymentsQueue = "payments";
/// Webhook deliveries: one message per event and endpoint, always in the
/// database (whatever the broker), delivered by WebhookDispatcher.
inline constexpr const char* kWebhooksQueue = "webhooks";

/// How many messages of one queue are where.
struct QueueDepth {
    std::int64_t ready = 0;     // due now, waiting for a consumer
    std::int64_t delayed = 0;   // due later: a step's timer, a retry backing off
    std::int64_t inFlight = 0;  // leased to a consumer
    std::int64_t dead = 0;      // dead-lettered
    std::int64_t oldestAgeMs = 0;
};

using QueueDepths = std::map<std::string, QueueDepth>;

}  // namespace orderpay
