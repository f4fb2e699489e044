#pragma once

#include "store/MessageSignal.h"
#include "store/Store.h"
#include "store/sqlite/Committer.h"
#include "store/sqlite/Database.h"
#include "store/sqlite/SqliteApiStore.h"
#include "store/sqlite/SqliteHealth.h"
#include "store/sqlite/SqliteOutboxStore.h"
#include "store/sqlite/SqliteQueueStore.h"
#include "store/sqlite/SqliteWorkStore.h"

namespace orderpay::sqlite {

/// The Store on one SQLite file: the database, its single writer (the
/// Committer, whose thread this object owns) and the roles on top.
class SqliteStore : public Store {
public:
    explicit SqliteStore(const StoreSettings& settings);
    /// Stops the writer once what was handed to it has committed, before
    /// the roles its callbacks may name go.
    ~SqliteStore() override;

    ApiStore& api() override { return api_; }
    WorkStore& work() override { return work_; }
    QueueStore& queue() override { return queue_; }
    OutboxStore& outbox() override { return outbox_; }
    StoreHealth& health() override { return health_; }
    void setMessageListener(std::function<void(const std::string& queue)> listener) override;
    std::string describe() const override { return "SQLite database " + db_.path(); }

    Database& database() { return db_; }
    Committer& committer() { return committer_; }

private:
    Database db_;
    Committer committer_;
    MessageSignal published_;
    SqliteApiStore api_;
    SqliteWorkStore work_;
    SqliteQueueStore queue_;
    SqliteOutboxStore outbox_;
    SqliteHealth health_;
};

}  // namespace orderpay::sqlite
