#include "store/Store.h"

#include "store/sqlite/SqliteStore.h"

namespace orderpay {

std::unique_ptr<Store> Store::open(const StoreSettings& settings)
{
    // Config refuses a kind this build has no implementation of.
    return std::make_unique<sqlite::SqliteStore>(settings);
}

}  // namespace orderpay
