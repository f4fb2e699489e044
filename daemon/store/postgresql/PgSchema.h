#pragma once

#include "store/postgresql/PgConnection.h"

#include <functional>

namespace orderpay::pg {

/// The schema on PostgreSQL: the same numbered steps as SQLite's
/// (store/sqlite/Database.cpp), each in PostgreSQL's dialect, so a version
/// means the same tables on both. The version is kept in the table
/// orderpay_schema.
class PgSchema {
public:
    static constexpr int kVersion = 10;

    /// Migrates the database `c` is connected to up to kVersion. Each step
    /// runs in a transaction of its own holding an advisory lock, and reads
    /// the version after taking it: instances starting together on one
    /// database migrate it once. `onStep(from)` is told of each step of an
    /// upgrade (a database at version 0 is new, not upgraded). A database
    /// of a newer version is refused (PermanentError).
    static void migrate(Connection& c, const std::function<void(int from)>& onStep = {});

    /// The version the database is at (0: none yet).
    static int version(Connection& c);
};

}  // namespace orderpay::pg
