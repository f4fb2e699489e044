#pragma once

#include "store/OutboxStore.h"
#include "store/sql/Committer.h"
#include "store/sql/Readers.h"

namespace orderpay::sql {

/// OutboxStore on the `messages` table (a row is ready, or publishing
/// until due_at) and the `deliveries` table (attempts per message id).
class SqlOutboxStore : public OutboxStore {
public:
    /// `instance`: instance.name, recorded as the holder of what it claims.
    SqlOutboxStore(Readers& readers, Committer& committer, std::string instance);

    std::vector<OutboxMessage> claim(std::size_t max, std::chrono::milliseconds claimTime) override;
    void unclaim(const std::vector<std::int64_t>& ids) override;
    void remove(const std::vector<std::int64_t>& ids) override;
    void add(const OutboxMessage& m) override;
    void deadLetter(const OutboxMessage& m, int attempts, const std::string& reason) override;
    QueueDepths pending() override;
    std::vector<int> countDeliveries(const std::vector<std::int64_t>& messageIds) override;
    void uncountDelivery(std::int64_t messageId) override;
    void forgetDeliveries(std::int64_t messageId) override;

private:
    Readers& readers_;
    Committer& committer_;
    const std::string instance_;
};

}  // namespace orderpay::sql
