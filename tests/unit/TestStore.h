#pragma once

#include "store/sqlite/SqliteStore.h"

#include "TempDir.h"

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
    sqlite::Committer& committer() { return store->committer(); }

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

/// One order processed in one go (the batch call with one order).
inline InstantResult processInstantly(WorkStore& work, const std::string& id, const std::vector<std::string>& steps)
{
    auto outcomes = work.processInstantly({id}, steps);
    if (outcomes.front().error) std::rethrow_exception(outcomes.front().error);
    return outcomes.front().result;
}

}  // namespace orderpay::test
