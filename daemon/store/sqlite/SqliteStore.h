#pragma once

#include "store/sql/SqlStore.h"
#include "store/sqlite/Database.h"

namespace orderpay::sqlite {

/// The database part of SqliteStore, a base listed before SqlStore so that
/// the file is open before the roles and closed after them.
struct SqliteDatabasePart {
    explicit SqliteDatabasePart(const StoreSettings& settings) : db_(settings) {}
    Database db_;
};

/// The Store on one SQLite file: the database, its single writer and the
/// shared SQL roles on top (store/sql), for one daemon: the file is its own.
class SqliteStore : private SqliteDatabasePart, public sql::SqlStore {
public:
    explicit SqliteStore(const StoreSettings& settings);

    std::string describe() const override { return "SQLite database " + db_.path(); }
    Database& database() { return db_; }
};

}  // namespace orderpay::sqlite
