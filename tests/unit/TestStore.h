#pragma once

#include "store/sqlite/SqliteStore.h"

#include "TempDir.h"

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>

namespace orderpay::test {

/// A real store on a database in a temporary folder. close() and open()
/// again stand for a daemon stopping and starting.
struct TestStore {
    TempDir dir;
    StoreSettings settings;
    std::unique_ptr<sqlite::SqliteStore> store;

    TestStore()
    {
        settings.sqlitePath = dir.file("test.db");
        settings.maxBatch = 64;
        open();
    }
    virtual ~TestStore() = default;

    virtual void open() { store = std::make_unique<sqlite::SqliteStore>(settings); }
    virtual void close() { store.reset(); }

    sqlite::Database& db() { return store->database(); }
    sql::Committer& committer() { return store->committer(); }

    /// The step an order is waiting for comes due now (its time is up).
    void dueNow(const std::string& orderId)
    {
        committer().write([&](sql::Statements& w) {
            w("UPDATE orders SET step_due_at = 0 WHERE id = ?").exec(orderId);
        });
    }

    /// A one-value query on this thread's read connection.
    std::int64_t count(const std::string& sql)
    {
        std::int64_t n = 0;
        db().localReader()(sql).query([&](sql::Statement& row) { n = row.integer(0); });
        return n;
    }
};

/// The API's writes, waited for: what the HTTP layer hands on, rethrown.
inline std::optional<StoredAnswer> awaitWritten(const std::function<void(ApiStore::Written)>& write)
{
    std::promise<std::optional<StoredAnswer>> outcome;
    write([&](std::optional<StoredAnswer> replay, std::exception_ptr error) {
        if (error) outcome.set_exception(error);
        else outcome.set_value(std::move(replay));
    });
    return outcome.get_future().get();
}

inline std::optional<StoredAnswer> createOrder(ApiStore& api, Order order,
                                               std::optional<IdempotencyRecord> idem = std::nullopt)
{
    return awaitWritten([&](ApiStore::Written then) { api.createOrder(std::move(order), std::move(idem), then); });
}

inline std::optional<StoredAnswer> createPayment(ApiStore& api, Payment payment,
                                                 std::optional<IdempotencyRecord> idem = std::nullopt)
{
    return awaitWritten([&](ApiStore::Written then) { api.createPayment(std::move(payment), std::move(idem), then); });
}

/// Cancels and returns the order after.
inline Order cancelOrder(ApiStore& api, const std::string& id)
{
    std::promise<void> done;
    api.cancelOrder(id, [&](std::exception_ptr error) {
        if (error) done.set_exception(error);
        else done.set_value();
    });
    done.get_future().get();
    return api.getOrder(id).value();
}

/// The three steps, each taking `each`, at most `concurrency` orders in processing.
inline ProcessingPlan plan(std::chrono::milliseconds each, std::int64_t concurrency = 10000)
{
    return ProcessingPlan{{"validate", "reserve_stock", "prepare_invoice"}, {each, each, each}, concurrency, "test"};
}

/// Steps that are never due unless a test makes them due (dueNow).
inline ProcessingPlan slowPlan(std::int64_t concurrency = 10000) { return plan(std::chrono::hours(1), concurrency); }

/// One message handled (the batch call with one message): `step` empty for
/// the order's start, else the step whose timer it is.
inline AdvanceResult advance(WorkStore& work, const std::string& id, const std::string& step, const ProcessingPlan& p)
{
    auto outcomes = work.advance({OrderWork{id, step}}, p);
    if (outcomes.front().error) std::rethrow_exception(outcomes.front().error);
    return outcomes.front().result;
}

}  // namespace orderpay::test
