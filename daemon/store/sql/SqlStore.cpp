#include "store/sql/SqlStore.h"

#include "domain/Queues.h"

namespace orderpay::sql {

SqlStore::SqlStore(Readers& readers, std::vector<std::unique_ptr<Writer>> writers, const StoreSettings& settings,
                   bool soleUser, std::function<void(std::ostream&)> extraMetrics)
    : subscriptions_(soleUser),
      committer_(std::move(writers), settings.groupCommit, settings.maxBatch, "writer", &subscriptions_),
      api_(readers, committer_, published_),
      work_(readers, committer_, published_),
      queue_(readers, committer_, soleUser, settings.instance),
      outbox_(readers, committer_, settings.instance),
      health_(readers, committer_, std::move(extraMetrics)),
      admin_(readers, committer_, published_),
      webhooks_(readers, committer_, published_, subscriptions_)
{
}

SqlStore::~SqlStore() { committer_.stop(); }

void SqlStore::setMessageListener(std::function<void(const std::string& queue)> listener)
{
    subscriptions_.setListener([listener] { listener(kWebhooksQueue); });
    published_.set(std::move(listener));
}

}  // namespace orderpay::sql
