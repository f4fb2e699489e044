#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>

namespace orderpay {

/// What readiness, /metrics and housekeeping need of the store. None of it
/// waits for the writer.
class StoreHealth {
public:
    virtual ~StoreHealth() = default;

    /// Whether the database took the last real write probe. A probe older
    /// than a second starts the next one, without waiting for it.
    virtual bool writable() = 0;
    /// Orders and payments by status.
    virtual std::map<std::string, std::int64_t> orderCounts() = 0;
    virtual std::map<std::string, std::int64_t> paymentCounts() = 0;
    /// The store's own gauges and counters, in the Prometheus text format.
    virtual void renderMetrics(std::ostream& out) = 0;
    /// Deletes idempotency keys older than their TTL; returns how many.
    virtual int purgeIdempotencyKeys(std::int64_t olderThanMillis) = 0;
};

}  // namespace orderpay
