#pragma once

#include "store/ApiStore.h"
#include "store/MessageSignal.h"
#include "store/sql/Committer.h"
#include "store/sql/Readers.h"

namespace orderpay::sql {

/// ApiStore in SQL, for SQLite and PostgreSQL alike: writes are units of
/// the Committer (group commit), reads run on a read connection.
class SqlApiStore : public ApiStore {
public:
    SqlApiStore(Readers& readers, Committer& committer, const MessageSignal& published);

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
    /// Claims `idem`'s key for this request, its answer stored with it; or
    /// the first answer given under the key, if it is still fresh (nothing
    /// is to be stored then); IdempotencyMismatch if the key was used with
    /// another request. The claim comes first, so that the same key sent to
    /// two instances at once waits on PostgreSQL's unique index for the
    /// first transaction, and the second replays its answer.
    static std::optional<StoredAnswer> claimIdempotency(Statements& w, const IdempotencyRecord& idem);

    Readers& readers_;
    Committer& committer_;
    const MessageSignal& published_;
};

}  // namespace orderpay::sql
