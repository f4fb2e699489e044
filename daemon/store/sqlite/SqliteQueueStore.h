#pragma once

#include "store/QueueStore.h"
#include "store/sqlite/Committer.h"
#include "store/sqlite/Database.h"

namespace orderpay::sqlite {

/// QueueStore on the `messages` table: a message's state is ready, leased
/// (until due_at) or dead; its lease number tells deliveries apart.
class SqliteQueueStore : public QueueStore {
public:
    SqliteQueueStore(Database& db, Committer& committer);

    void releaseAllLeases() override;
    bool anythingDue(const std::string& queue) override;
    std::vector<StoredMessage> lease(const std::string& queue, std::size_t max,
                                     std::chrono::milliseconds leaseTime) override;
    void ack(const StoredMessage& m, bool wait) override;
    void retry(const StoredMessage& m, std::chrono::milliseconds delay, const std::string& reason) override;
    void deadLetter(const StoredMessage& m, const std::string& reason) override;
    void release(const StoredMessage& m) override;
    QueueDepths depths() override;

private:
    Database& db_;
    Committer& committer_;
};

}  // namespace orderpay::sqlite
