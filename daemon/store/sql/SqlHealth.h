#pragma once

#include "store/StoreHealth.h"
#include "store/sql/Committer.h"
#include "store/sql/Readers.h"

#include <atomic>
#include <functional>
#include <cstdint>
#include <string>

namespace orderpay::sql {

/// StoreHealth in SQL. The write probe is a real write through the
/// Committer (a full disk or a read-only file fails it), at most one a
/// second and never waited for.
class SqlHealth : public StoreHealth {
public:
    /// `extraMetrics` renders the database's own gauges after the store's.
    SqlHealth(Readers& readers, Committer& committer, std::function<void(std::ostream&)> extraMetrics = {});

    bool writable() override;
    std::map<std::string, std::int64_t> orderCounts() override;
    std::map<std::string, std::int64_t> paymentCounts() override;
    void renderMetrics(std::ostream& out) override;
    int purgeIdempotencyKeys(std::int64_t olderThanMillis) override;

private:
    /// "orders" or "payments" by status, from status_counts.
    std::map<std::string, std::int64_t> countByStatus(const std::string& kind);

    Readers& readers_;
    Committer& committer_;
    std::function<void(std::ostream&)> extraMetrics_;
    // The database took the writes of its migration at start: writable
    // until a probe says otherwise.
    std::atomic<bool> writable_{true};
    std::atomic<bool> probing_{false};
    std::atomic<std::int64_t> probedAt_{0};  // steady milliseconds
};

}  // namespace orderpay::sql
