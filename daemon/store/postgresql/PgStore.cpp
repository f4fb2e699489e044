#include "store/postgresql/PgStore.h"

namespace orderpay::pg {

PgStore::PgStore(const StoreSettings& settings)
    : db_(settings),
      committer_(db_.makeWriters(), settings.groupCommit, settings.maxBatch),
      api_(db_, committer_, published_),
      work_(db_, committer_, published_),
      queue_(db_, committer_, false),
      outbox_(db_, committer_),
      health_(db_, committer_, [this](std::ostream& out) { db_.renderMetrics(out); })
{
}

PgStore::~PgStore() { committer_.stop(); }

void PgStore::setMessageListener(std::function<void(const std::string& queue)> listener)
{
    published_.set(std::move(listener));
}

}  // namespace orderpay::pg
