#pragma once

#include "store/ApiStore.h"
#include "store/MessageSignal.h"
#include "store/sqlite/Committer.h"
#include "store/sqlite/Database.h"

namespace orderpay::sqlite {

/// ApiStore on SQLite: writes are units of the Committer (group commit),
/// reads run on the calling thread's own read connection.
class SqliteApiStore : public ApiStore {
public:
    SqliteApiStore(Database& db, Committer& committer, const MessageSignal& published);

    void createOrder(Order order, std::optional<IdempotencyRecord> idem, Written then) override;
    void createPayment(Payment payment, std::optional<IdempotencyRecord> idem, Written then) override;
    void cancelOrder(const std::string& id, Done then) override;
    std::optional<Order> getOrder(const std::string& id) override;
    std::optional<Payment> getPayment(const std::string& id) override;
    std::vector<Order> listOrders(std::optional<OrderStatus> status, int limit, const std::string& after) override;

    /// The WHERE ... LIMIT ? tail of a list query; its parameters are the
    /// status (if byStatus), the id to start after (if afterId), the limit.
    static std::string listFilter(bool byStatus, bool afterId);

private:
    /// The first answer given under `idem`'s key, if it is still fresh;
    /// IdempotencyMismatch if the key was used with another request.
    static std::optional<StoredAnswer> checkIdempotency(sql::Statements& w, const IdempotencyRecord& idem);
    static void rememberAnswer(sql::Statements& w, const IdempotencyRecord& idem);

    Database& db_;
    Committer& committer_;
    const MessageSignal& published_;
};

}  // namespace orderpay::sqlite
