#include "store/postgresql/PgStore.h"

namespace orderpay::pg {

PgStore::PgStore(const StoreSettings& settings)
    : PgDatabasePart(settings),
      sql::SqlStore(db_, db_.makeWriters(), settings, false, [this](std::ostream& out) { db_.renderMetrics(out); })
{
}

}  // namespace orderpay::pg
