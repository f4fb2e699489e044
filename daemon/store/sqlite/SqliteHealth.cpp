#include "store/sqlite/SqliteHealth.h"

#include "domain/Clock.h"


namespace orderpay::sqlite {

SqliteHealth::SqliteHealth(Database& db, Committer& committer) : db_(db), committer_(committer) {}

bool SqliteHealth::writable()
{
    const std::int64_t now = clock::steadyMillis();
    if (now - probedAt_.load() >= 1000 && !probing_.exchange(true)) {
        probedAt_ = now;
        committer_.submit(
            [](sql::Statements& w) {
                w("INSERT OR REPLACE INTO health_probe (id, at) VALUES (1, ?)").exec(clock::nowMillis());
            },
            [this](std::exception_ptr error) {
                writable_ = !error;
                probing_ = false;
            });
    }
    return writable_;
}

std::string SqliteHealth::statusCountQuery(const std::string& table)
{
    return "SELECT status, COUNT(*) FROM " + table + " GROUP BY status";
}

std::map<std::string, std::int64_t> SqliteHealth::countByStatus(const std::string& table)
{
    std::map<std::string, std::int64_t> result;
    db_.localReader()(statusCountQuery(table))
        .query([&](sql::Statement& row) { result[row.text(0)] = row.integer(1); });
    return result;
}

std::map<std::string, std::int64_t> SqliteHealth::orderCounts() { return countByStatus("orders"); }

std::map<std::string, std::int64_t> SqliteHealth::paymentCounts() { return countByStatus("payments"); }

int SqliteHealth::purgeIdempotencyKeys(std::int64_t olderThanMillis)
{
    int purged = 0;
    committer_.write([&](sql::Statements& w) {
        purged = w("DELETE FROM idempotency_keys WHERE created_at < ?").exec(olderThanMillis);
    });
    return purged;
}

void SqliteHealth::renderMetrics(std::ostream& out)
{
    const auto commits = committer_.stats();
    out << "# HELP orderpay_store_transactions_total Write transactions committed (each one sync).\n"
        << "# TYPE orderpay_store_transactions_total counter\n"
        << "orderpay_store_transactions_total " << commits.transactions << "\n"
        << "# HELP orderpay_store_writes_total Units of work committed; over transactions, the mean group-commit batch.\n"
        << "# TYPE orderpay_store_writes_total counter\n"
        << "orderpay_store_writes_total " << commits.units << "\n"
        << "# HELP orderpay_store_batch_size Units of work per committed transaction (group commit).\n"
        << "# TYPE orderpay_store_batch_size histogram\n";
    for (std::size_t i = 0; i < Committer::kBatchBounds.size(); ++i) {
        out << "orderpay_store_batch_size_bucket{le=\"" << Committer::kBatchBounds[i] << "\"} " << commits.batchesUpTo[i]
            << "\n";
    }
    out << "orderpay_store_batch_size_bucket{le=\"+Inf\"} " << commits.transactions << "\n"
        << "orderpay_store_batch_size_sum " << commits.units << "\n"
        << "orderpay_store_batch_size_count " << commits.transactions << "\n"
        << "# HELP orderpay_store_failed_commits_total Transactions the database refused.\n"
        << "# TYPE orderpay_store_failed_commits_total counter\n"
        << "orderpay_store_failed_commits_total " << commits.failedCommits << "\n"
        << "# HELP orderpay_sqlite_memory_bytes Heap SQLite holds now (page caches, schemas, statements).\n"
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

}  // namespace orderpay::sqlite
