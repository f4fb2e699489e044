#include "store/sql/SqlHealth.h"

#include "domain/Clock.h"


namespace orderpay::sql {

SqlHealth::SqlHealth(Readers& readers, Committer& committer, std::function<void(std::ostream&)> extraMetrics)
    : readers_(readers), committer_(committer), extraMetrics_(std::move(extraMetrics))
{
}

bool SqlHealth::writable()
{
    const std::int64_t now = clock::steadyMillis();
    if (now - probedAt_.load() >= 1000 && !probing_.exchange(true)) {
        probedAt_ = now;
        committer_.submit(
            [](Statements& w) {
                w("INSERT INTO health_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at").send(clock::nowMillis());
            },
            [this](std::exception_ptr error) {
                writable_ = !error;
                probing_ = false;
            });
    }
    // A refused transaction of any writer says so at once, without
    // waiting for the next probe.
    return writable_ && committer_.writable();
}

std::map<std::string, std::int64_t> SqlHealth::countByStatus(const std::string& kind)
{
    // The counts the writers keep (status_counts, see StatusTally): a few rows,
    // however many orders there are.
    std::map<std::string, std::int64_t> result;
    readers_.readOutsideTransaction([&](Statements& q) {
        q("SELECT status, SUM(n) FROM status_counts WHERE kind = ? GROUP BY status").query(
            [&](Statement& row) { result[row.text(0)] = row.integer(1); }, kind);
    });
    return result;
}

std::map<std::string, std::int64_t> SqlHealth::orderCounts() { return countByStatus("orders"); }

std::map<std::string, std::int64_t> SqlHealth::paymentCounts() { return countByStatus("payments"); }

int SqlHealth::purgeIdempotencyKeys(std::int64_t olderThanMillis)
{
    int purged = 0;
    committer_.write([&](Statements& w) {
        purged = w("DELETE FROM idempotency_keys WHERE created_at < ?").exec(olderThanMillis);
    });
    return purged;
}

void SqlHealth::renderMetrics(std::ostream& out)
{
    const auto commits = committer_.stats();
    out << "# HELP orderpay_store_transactions_total Write transactions committed (each one sync).\n"
        << "# TYPE orderpay_store_transactions_total counter\n"
        << "orderpay_store_transactions_total " << commits.transactions << "\n"
        << "# HELP orderpay_store_writes_total Units of work committed; over transactions, the mean group-commit batch.\n"
        << "# TYPE orderpay_store_writes_total counter\n"
        << "orderpay_store_writes_total " << commits.units << "\n"
        << "# HELP orderpay_store_writer_busy_seconds_total Time the writers spent on transactions, all writers "
           "together; its rate over the writers' count is how busy writing is (1: always).\n"
        << "# TYPE orderpay_store_writer_busy_seconds_total counter\n"
        << "orderpay_store_writer_busy_seconds_total " << static_cast<double>(committer_.busyMicros()) / 1e6 << "\n"
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
        << "# HELP orderpay_store_conflicts_total Batches run again after a deadlock or serialization failure "
           "with another transaction (PostgreSQL).\n"
        << "# TYPE orderpay_store_conflicts_total counter\n"
        << "orderpay_store_conflicts_total " << commits.conflicts << "\n";
    if (extraMetrics_) extraMetrics_(out);
}

}  // namespace orderpay::sql
