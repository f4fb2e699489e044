#include "store/sqlite/SqliteStore.h"

namespace orderpay::sqlite {

SqliteStore::SqliteStore(const StoreSettings& settings)
    : db_(settings),
      committer_(db_, settings.groupCommit, settings.maxBatch),
      api_(db_, committer_, published_),
      work_(db_, committer_, published_),
      queue_(db_, committer_),
      outbox_(db_, committer_),
      health_(db_, committer_)
{
}

SqliteStore::~SqliteStore() { committer_.stop(); }

void SqliteStore::setMessageListener(std::function<void(const std::string& queue)> listener)
{
    published_.set(std::move(listener));
}

}  // namespace orderpay::sqlite
