#include "store/sqlite/SqliteStore.h"

namespace orderpay::sqlite {
namespace {

std::vector<std::unique_ptr<sql::Writer>> oneWriter(Database& db)
{
    std::vector<std::unique_ptr<sql::Writer>> writers;
    writers.push_back(std::make_unique<SqliteWriter>(db));
    return writers;
}

void renderMemory(std::ostream& out)
{
    out << "# HELP orderpay_sqlite_memory_bytes Heap SQLite holds now (page caches, schemas, statements).\n"
        << "# TYPE orderpay_sqlite_memory_bytes gauge\n"
        << "orderpay_sqlite_memory_bytes " << Database::memoryUsed() << "\n"
        << "# HELP orderpay_sqlite_memory_highwater_bytes The most heap SQLite has held since start.\n"
        << "# TYPE orderpay_sqlite_memory_highwater_bytes gauge\n"
        << "orderpay_sqlite_memory_highwater_bytes " << Database::memoryHighwater() << "\n"
        << "# HELP orderpay_sqlite_memory_limit_bytes What SQLite keeps its page caches under, all connections "
           "together.\n"
        << "# TYPE orderpay_sqlite_memory_limit_bytes gauge\n"
        << "orderpay_sqlite_memory_limit_bytes " << Database::memoryLimit() << "\n";
}

}  // namespace

SqliteStore::SqliteStore(const StoreSettings& settings)
    : SqliteDatabasePart(settings), sql::SqlStore(db_, oneWriter(db_), settings, true, renderMemory)
{
}

}  // namespace orderpay::sqlite
