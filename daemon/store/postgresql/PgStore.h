#pragma once

#include "store/MessageSignal.h"
#include "store/Store.h"
#include "store/postgresql/PgDatabase.h"
#include "store/sql/Committer.h"
#include "store/sql/SqlApiStore.h"
#include "store/sql/SqlHealth.h"
#include "store/sql/SqlOutboxStore.h"
#include "store/sql/SqlQueueStore.h"
#include "store/sql/SqlWorkStore.h"

namespace orderpay::pg {

/// The Store on one PostgreSQL database that any number of instances
/// share: the shared SQL roles (store/sql) on PostgreSQL's connections,
/// several writers committing in parallel, each with group commit. The
/// embedded queue's leases are taken with SKIP LOCKED, so no message is
/// handed to two instances, and a lease of an instance that died runs out
/// (broker.lease) for another to take.
class PgStore : public Store {
public:
    explicit PgStore(const StoreSettings& settings);
    ~PgStore() override;

    ApiStore& api() override { return api_; }
    WorkStore& work() override { return work_; }
    QueueStore& queue() override { return queue_; }
    OutboxStore& outbox() override { return outbox_; }
    StoreHealth& health() override { return health_; }
    void setMessageListener(std::function<void(const std::string& queue)> listener) override;
    std::string describe() const override { return db_.description(); }

    sql::Committer& committer() { return committer_; }

private:
    PgDatabase db_;
    sql::Committer committer_;
    MessageSignal published_;
    sql::SqlApiStore api_;
    sql::SqlWorkStore work_;
    sql::SqlQueueStore queue_;
    sql::SqlOutboxStore outbox_;
    sql::SqlHealth health_;
};

}  // namespace orderpay::pg
