#pragma once

#include "domain/Order.h"
#include "store/sql/Statement.h"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

/// The SQL of orders, payments and their events that the API's and the
/// workers' transactions share. Each function runs on the connection it is
/// given, inside the caller's transaction.
namespace orderpay::sql {

struct EventFields {
    std::string status;
    std::string reason;
    std::string step;
    std::string paymentId;
    std::string instance;  // of step events: the daemon that ran the step
};

/// Appends one order's events. The last sequence number is read once, at
/// the first event (unless the caller read it already): the order's row is
/// locked, so within one unit of work the numbers follow each other
/// (processing an order writes eight events; reading the maximum for each
/// would add as many statements).
class OrderEvents {
public:
    /// `batched`: the events are kept and written by flush(), all in one
    /// statement (an order's processing writes eight).
    OrderEvents(Statements& w, const std::string& orderId, std::int64_t next = 0, bool batched = false)
        : w_(w), orderId_(orderId), next_(next), batched_(batched)
    {
    }

    void add(const std::string& type, const EventFields& f, const std::string& at);
    /// Batched: keeps the order's move to `to` (from the status read,
    /// `from`, at the first move) for flush(): an instant order goes from
    /// queued through processing to awaiting_payment in one unit, and one
    /// UPDATE makes one new version of its row instead of two.
    void keepMove(std::string_view from, std::string_view to, const std::string& reason, const std::string& at);
    /// Batched: keeps when the order's step in progress is due
    /// (orders.step_due_at), written by flush() with the move if any.
    void keepStepDue(std::int64_t dueAt) { stepDue_ = dueAt; }
    /// Writes the move, the step's due time and the events kept (batched);
    /// the caller calls it before its unit ends.
    void flush();
    bool batched() const { return batched_; }
    Statements& statements() const { return w_; }
    const std::string& orderId() const { return orderId_; }

private:
    struct Move {
        std::string_view from, to;
        std::string reason, at;
    };
    Statements& w_;
    const std::string& orderId_;
    std::int64_t next_ = 0;  // 0: not read yet
    const bool batched_;
    std::vector<std::optional<std::string>> kept_;  // batched: 9 values per event
    std::optional<Move> move_;                      // batched: the order's status to write
    std::optional<std::int64_t> stepDue_;           // batched: orders.step_due_at to write
};

/// Queues the webhook deliveries of an order's event `seq` (one message of
/// the webhooks queue per endpoint subscribed to it, see WebhookStore), if
/// it is one that webhooks announce: a status or payment event.
void announceWebhooks(Statements& w, const std::string& orderId, std::int64_t seq, const std::string& type,
                      const EventFields& f);

/// Adds a message to `queue`'s table of messages (the embedded queue, or
/// the outbox with RabbitMQ), in the caller's transaction.
void queueMessage(Statements& w, const std::string& queue, const std::string& body);
/// The same, due at `dueAt` (milliseconds since the epoch) instead of now.
void queueMessageAt(Statements& w, const std::string& queue, const std::string& body, std::int64_t dueAt);
std::string orderMessage(const std::string& orderId);
/// The timer of an order's step: due when the step has taken its time.
std::string orderStepMessage(const std::string& orderId, const std::string& step);
std::string paymentMessage(const std::string& paymentId);

/// An order's status, its row locked until the transaction ends (in
/// PostgreSQL; SQLite's one writer needs no lock).
std::optional<OrderStatus> readOrderStatus(Statements& w, const std::string& id);
/// Locks the order of a payment (as readOrderStatus does): a payment and a
/// cancel of its order, or two payments of one order, are settled one
/// after the other. False if the payment or its order does not exist.
bool lockOrderOfPayment(Statements& w, const std::string& paymentId);
/// Orders in processing, as moveOrder counts them.
std::int64_t processingCount(Statements& s);
/// Moves an order from `from`, the status the caller read in this
/// transaction (readOrderStatus: the row is locked), to `to` with its
/// status event. Keeps the count of orders in processing (work_counters) in
/// step, unless the caller does (`count` false: a unit that moves an order
/// in and out of processing updates the count once, or not at all). Sent
/// without waiting (Statement::send).
void moveOrder(OrderEvents& events, OrderStatus from, OrderStatus to, const std::string& reason, bool count = true);
/// Adds `delta` to the count of orders in processing.
void countProcessing(Statements& w, std::int64_t delta);
/// Rejects the payments still queued for an order that will never take them.
void rejectHeldPayments(OrderEvents& events);

/// What an order's events so far say: the steps done (their step_completed
/// events are the ledger that makes each step's effect happen once: an
/// event is written in the same transaction as its step's effect, and
/// events are never removed), the steps begun, and the next sequence number.
struct EventsSoFar {
    std::vector<std::string> completed;
    std::vector<std::string> started;
    std::int64_t nextSeq = 1;
    /// Takes in one event (seq, type, step), in any order.
    void add(std::int64_t seq, const std::string& type, const std::string& step);
};
bool isCompleted(const std::vector<std::string>& done, const std::string& step);
/// Does a processing step's effect and records it, for a step not done yet
/// (the caller read the events in this transaction); `instance` names the
/// daemon that ran it; `items` the order's items as stored (JSON), read
/// here if null.
void completeStepIn(OrderEvents& events, const std::string& step, const std::string& instance,
                    const std::string* items = nullptr);
/// processing -> awaiting_payment (the caller read the order processing),
/// and the payments that arrived meanwhile are queued (`releasedPayments`:
/// there may have been some).
void finishIn(OrderEvents& events, bool& releasedPayments, bool count = true);

/// The columns of an order, in the order orderFromRow reads them; a query
/// adds its tail ("WHERE ...").
inline constexpr std::string_view kOrderColumns =
    "SELECT id, status, reason, customer, currency, total_amount, items, metadata, created_at, updated_at FROM orders ";
Order orderFromRow(const Statement& row);
/// An order without its payments and events.
std::optional<Order> loadOrder(Statements& q, const std::string& id);

enum class PaymentsOf { Id, Order };
/// The payment with id `key`, or the payments of order `key`, by id.
std::vector<Payment> loadPayments(Statements& q, PaymentsOf of, const std::string& key);

}  // namespace orderpay::sql
