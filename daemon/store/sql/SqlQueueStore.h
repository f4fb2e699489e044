#pragma once

#include "store/QueueStore.h"
#include "store/sql/Committer.h"
#include "store/sql/Readers.h"

namespace orderpay::sql {

/// QueueStore on the `messages` table: a message's state is ready, leased
/// (until due_at) or dead; its lease number tells deliveries apart.
class SqlQueueStore : public QueueStore {
public:
    /// `soleUser`: no other instance uses the database (SQLite), so the
    /// leases found at start are a previous run's; `instance`: instance.name,
    /// recorded as the holder of what it leases (messages.holder).
    SqlQueueStore(Readers& readers, Committer& committer, bool soleUser, std::string instance);

    void releaseAllLeases() override;
    bool anythingDue(const std::string& queue) override;
    std::vector<StoredMessage> lease(const std::string& queue, std::size_t max,
                                     std::chrono::milliseconds leaseTime) override;
    std::vector<StoredMessage> due(const std::string& queue, std::size_t max) override;
    void ack(const StoredMessage& m, bool wait) override;
    void retry(const StoredMessage& m, std::chrono::milliseconds delay, const std::string& reason) override;
    void deadLetter(const StoredMessage& m, const std::string& reason) override;
    void release(const StoredMessage& m) override;
    QueueDepths depths() override;

private:
    Readers& readers_;
    Committer& committer_;
    const bool soleUser_;
    const std::string instance_;
};

}  // namespace orderpay::sql
