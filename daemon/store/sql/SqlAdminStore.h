#pragma once

#include "store/AdminStore.h"
#include "store/MessageSignal.h"
#include "store/sql/Committer.h"
#include "store/sql/Readers.h"

namespace orderpay::sql {

/// AdminStore in SQL. A dead letter is its message's row, kept with state
/// 'dead' (both brokers: RabbitMQ's dead letters are written here too, see
/// RabbitMqBroker::deadLetter), due_at set to when it died; a replay takes
/// the row away and queues a fresh message in the same transaction as the
/// order's or payment's move back to queued.
class SqlAdminStore : public AdminStore {
public:
    SqlAdminStore(Readers& readers, Committer& committer, const MessageSignal& published);

    std::map<std::string, std::map<std::string, std::int64_t>> statusCounts() override;
    std::vector<DeadLetter> deadLetters(const std::string& queue, int limit, std::int64_t after) override;
    std::optional<DeadLetter> deadLetter(std::int64_t id) override;
    void replay(std::int64_t id, Done then) override;
    void replayAll(const DeadLetterFilter& filter, bool dryRun,
                   std::function<void(Replayed, std::exception_ptr)> then) override;

private:
    Readers& readers_;
    Committer& committer_;
    const MessageSignal& published_;
};

}  // namespace orderpay::sql
