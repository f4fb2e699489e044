#pragma once

#include "store/MessageSignal.h"
#include "store/Store.h"
#include "store/sql/Committer.h"
#include "store/sql/SqlApiStore.h"
#include "store/sql/SqlHealth.h"
#include "store/sql/SqlOutboxStore.h"
#include "store/sql/SqlQueueStore.h"
#include "store/sql/SqlWorkStore.h"
#include "store/sqlite/Database.h"

namespace orderpay::sqlite {

/// The Store on one SQLite file: the database, its single writer (the
/// Committer, whose thread this object owns) and the shared SQL roles on
/// top (store/sql), for one daemon: the file is its own.
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
    sql::Committer& committer() { return committer_; }

private:
    Database db_;
    sql::Committer committer_;
    MessageSignal published_;
    sql::SqlApiStore api_;
    sql::SqlWorkStore work_;
    sql::SqlQueueStore queue_;
    sql::SqlOutboxStore outbox_;
    sql::SqlHealth health_;
};

}  // namespace orderpay::sqlite
