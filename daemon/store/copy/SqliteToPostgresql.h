#pragma once

#include "settings/Settings.h"

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace orderpay {

/// One table as it was copied: its rows and a digest of them (SHA-256 of
/// every row's values in key order), the same on both sides.
struct CopiedTable {
    std::string table;
    std::int64_t rows = 0;
    std::string digest;
};

/// Copies the SQLite database `store.sqlite.path` into the PostgreSQL
/// database `store.postgresql.uri`, with the daemon stopped: every order,
/// payment, event, reservation, invoice, queued, leased and dead message,
/// delivery count and idempotency key. The PostgreSQL database is migrated
/// to the same schema first and must hold no data. Everything is written in
/// one transaction, read back and compared with the source (row counts and
/// a digest per table) before it commits: a copy that does not match is
/// rolled back and thrown (PermanentError), and nothing is left half
/// copied. Progress lines go to `progress`.
std::vector<CopiedTable> copySqliteToPostgresql(const StoreSettings& settings, std::ostream& progress);

}  // namespace orderpay
