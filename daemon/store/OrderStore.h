#pragma once

#include "domain/Order.h"
#include "store/Committer.h"
#include "store/Database.h"

#include <functional>
#include <map>
#include <exception>
#include <optional>
#include <string>
#include <vector>

namespace orderpay {

inline constexpr const char* kOrdersQueue = "orders";
inline constexpr const char* kPaymentsQueue = "payments";

/// The answer a POST gave, kept under its Idempotency-Key for replay.
struct StoredAnswer {
    int status = 0;
    std::string location;
    std::string body;
};

struct IdempotencyRecord {
    std::string key;
    std::string requestHash;
    StoredAnswer answer;
    std::int64_t ttlMillis = 0;
};

/// How processing a payment ended.
struct PaymentOutcome {
    PaymentStatus status = PaymentStatus::Queued;
    std::optional<std::string> reason;
    std::string orderId;
    bool alreadyFinal = false;  // a redelivery: nothing was changed
};

/// Orders, payments and their history. Writes go through the Committer and
/// each is one transaction: a state change, its events and the message
/// announcing it commit together or not at all.
class OrderStore {
public:
    OrderStore(Database& db, Committer& committer);

    /// Called after a commit that queued a message on `queue`.
    void setMessageListener(std::function<void(const std::string& queue)> listener);

    // --- requests ---------------------------------------------------------

    /// How a request's write ended, told once on the writer's thread: the
    /// first answer if its Idempotency-Key was used before with the same
    /// request (and nothing was stored), or what it threw.
    using Written = std::function<void(std::optional<StoredAnswer> replay, std::exception_ptr error)>;

    /// Stores a new order (status queued) and its queue message, without
    /// waiting: `then` is told when it committed. An Idempotency-Key used
    /// before with another request fails it with IdempotencyMismatch.
    void createOrder(Order order, std::optional<IdempotencyRecord> idem, Written then);
    /// The same, waiting: returns the replayed answer, throws the error
    /// (for callers with a thread to spare: the store's tests).
    std::optional<StoredAnswer> createOrder(const Order& order, const std::optional<IdempotencyRecord>& idem);

    /// Stores a payment for an existing order, without waiting. Fails with
    /// NotFound (no such order) or Conflict (order final). The payment is
    /// queued at once if the order is awaiting_payment, else held until it is.
    void createPayment(Payment payment, std::optional<IdempotencyRecord> idem, Written then);
    /// The same, waiting.
    std::optional<StoredAnswer> createPayment(const Payment& payment, const std::optional<IdempotencyRecord>& idem);

    /// Cancels a queued or awaiting_payment order; held payments are
    /// rejected. Without waiting: `then` is told on the writer's thread
    /// when it committed, or what it threw (NotFound, Conflict).
    using Done = std::function<void(std::exception_ptr error)>;
    void cancelOrder(const std::string& id, Done then);
    /// The same, waiting; returns the order after.
    Order cancelOrder(const std::string& id);

    std::optional<Order> getOrder(const std::string& id);
    std::optional<Payment> getPayment(const std::string& id);
    /// Newest first; ids below `after` only. Orders come without payments and events.
    std::vector<Order> listOrders(std::optional<OrderStatus> status, int limit, const std::string& after);
    /// The WHERE/ORDER BY/LIMIT of that query (status and id bound in that order).
    /// The WHERE ... LIMIT ? tail of a list query; its parameters are the
    /// status (if byStatus), the id to start after (if afterId), the limit.
    static std::string listFilter(bool byStatus, bool afterId);
    /// The count of a table's rows by status, behind /metrics ("orders" or "payments").
    static std::string statusCountQuery(const std::string& table);

    // --- workers ----------------------------------------------------------

    /// queued -> processing; returns the status after (unchanged if the
    /// order was no longer queued).
    OrderStatus startProcessing(const std::string& id);
    bool isStepCompleted(const std::string& id, const std::string& step);
    void recordStepStarted(const std::string& id, const std::string& step);
    /// Runs the step's effect, records it in the ledger and adds its
    /// step_completed event, unless the ledger says it was done already.
    /// Returns false if it had been done.
    bool completeStep(const std::string& id, const std::string& step);
    /// processing -> awaiting_payment, and queues the payments held for it.
    bool finishProcessing(const std::string& id);
    /// With no time to wait between steps, the whole processing in one
    /// transaction: queued -> processing, every step not yet in the ledger
    /// (step_started, effect, step_completed), -> awaiting_payment. The same
    /// events and effects as the step-by-step path, in a third of the syncs.
    struct InstantResult {
        OrderStatus before = OrderStatus::Queued;
        std::vector<std::string> stepsRun;
        bool finished = false;
        bool releasedPayments = false;  // payments held for the order were queued
    };
    InstantResult processInstantly(const std::string& id, const std::vector<std::string>& steps);
    /// processInstantly for several orders in one transaction, each in its
    /// own savepoint: one order's failure (say, it does not exist) leaves the
    /// others done. Per order, its result or what it threw.
    struct InstantOutcome {
        InstantResult result;
        std::exception_ptr error;
    };
    std::vector<InstantOutcome> processInstantly(const std::vector<std::string>& ids,
                                                 const std::vector<std::string>& steps);
    /// Any non-final state -> failed; held payments are rejected.
    bool failOrder(const std::string& id, const std::string& reason);

    /// queued -> processing for a payment; false if it is final already.
    bool startPayment(const std::string& id);
    /// Applies SPEC.md's payment rules and moves the payment (and on
    /// success its order) to a final state, exactly once.
    PaymentOutcome settlePayment(const std::string& id);
    /// A payment whose message dead-lettered: rejected, processing_failed.
    void abandonPayment(const std::string& id);

    // --- operations -------------------------------------------------------

    std::map<std::string, std::int64_t> orderCounts();
    std::map<std::string, std::int64_t> paymentCounts();
    /// Deletes idempotency keys older than their TTL; returns how many.
    int purgeIdempotencyKeys(std::int64_t olderThanMillis);
    /// A real write through the commit path, without waiting: `then` is
    /// told on the writer's thread whether the database took it.
    void probeWritable(std::function<void(bool writable)> then);

private:
    std::optional<StoredAnswer> checkIdempotency(Poco::Data::Session& s, const IdempotencyRecord& idem);
    void rememberAnswer(Poco::Data::Session& s, const IdempotencyRecord& idem);
    void notify(const std::string& queue);
    /// The unit of work of processInstantly for one order.
    Committer::Work instantUnit(const std::string& id, const std::vector<std::string>& steps, InstantResult& result);
    std::map<std::string, std::int64_t> countByStatus(const std::string& table);

    Database& db_;
    Committer& committer_;
    std::function<void(const std::string&)> listener_;
};

}  // namespace orderpay
