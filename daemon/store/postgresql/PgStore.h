#pragma once

#include "store/postgresql/PgDatabase.h"
#include "store/sql/SqlStore.h"

namespace orderpay::pg {

/// The database part of PgStore, a base listed before SqlStore so that
/// the sessions exist before the roles and close after them.
struct PgDatabasePart {
    explicit PgDatabasePart(const StoreSettings& settings) : db_(settings) {}
    PgDatabase db_;
};

/// The Store on one PostgreSQL database that any number of instances
/// share: the shared SQL roles (store/sql) on PostgreSQL's connections,
/// several writers committing in parallel, each with group commit. The
/// embedded queue's leases are taken with SKIP LOCKED, so no message is
/// handed to two instances, and a lease of an instance that died runs out
/// (broker.lease) for another to take.
class PgStore : private PgDatabasePart, public sql::SqlStore {
public:
    explicit PgStore(const StoreSettings& settings);

    std::string describe() const override { return db_.description(); }
};

}  // namespace orderpay::pg
