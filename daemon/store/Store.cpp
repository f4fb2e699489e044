#include "store/Store.h"

#include "store/postgresql/PgStore.h"
#include "store/sqlite/SqliteStore.h"

namespace orderpay {

std::unique_ptr<Store> Store::open(const StoreSettings& settings)
{
    if (settings.kind == "postgresql") return std::make_unique<pg::PgStore>(settings);
    return std::make_unique<sqlite::SqliteStore>(settings);
}

}  // namespace orderpay
