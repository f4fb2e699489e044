#pragma once

#include "store/MessageSignal.h"
#include "store/Store.h"
#include "store/sql/Committer.h"
#include "store/sql/SqlAdminStore.h"
#include "store/sql/Readers.h"
#include "store/sql/SqlApiStore.h"
#include "store/sql/SqlHealth.h"
#include "store/sql/SqlOutboxStore.h"
#include "store/sql/SqlQueueStore.h"
#include "store/sql/SqlWebhookStore.h"
#include "store/sql/SqlWorkStore.h"

#include <functional>
#include <memory>
#include <ostream>
#include <vector>

namespace orderpay::sql {

/// The Store's roles on a database reached through the SQL port: its
/// writers (the Committer, whose threads this object owns), its readers,
/// and the roles on top. SQLite and PostgreSQL each add their database,
/// constructed before this part (a base listed first) and gone after it.
class SqlStore : public Store {
public:
    /// `soleUser`: no other instance uses the database (SQLite's file);
    /// `extraMetrics` renders the database's own gauges.
    SqlStore(Readers& readers, std::vector<std::unique_ptr<Writer>> writers, const StoreSettings& settings,
             bool soleUser, std::function<void(std::ostream&)> extraMetrics);
    /// Stops the writers once what was handed to them has committed, before
    /// the roles their callbacks may name go.
    ~SqlStore() override;

    ApiStore& api() override { return api_; }
    WorkStore& work() override { return work_; }
    QueueStore& queue() override { return queue_; }
    OutboxStore& outbox() override { return outbox_; }
    StoreHealth& health() override { return health_; }
    AdminStore& admin() override { return admin_; }
    WebhookStore& webhooks() override { return webhooks_; }
    void setMessageListener(std::function<void(const std::string& queue)> listener) override;

    Committer& committer() { return committer_; }

private:
    WebhookSubscriptions subscriptions_;  // read by the committer's writers
    Committer committer_;
    MessageSignal published_;
    SqlApiStore api_;
    SqlWorkStore work_;
    SqlQueueStore queue_;
    SqlOutboxStore outbox_;
    SqlHealth health_;
    SqlAdminStore admin_;
    SqlWebhookStore webhooks_;
};

}  // namespace orderpay::sql
