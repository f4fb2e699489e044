#include "store/sql/OrderRows.h"

#include "domain/Clock.h"
#include "domain/Errors.h"
#include "domain/Queues.h"
#include "store/JsonText.h"
#include "store/WebhookStore.h"

#include <algorithm>

namespace orderpay::sql {
namespace {

constexpr std::string_view kPaymentColumns =
    "SELECT id, order_id, status, reason, amount, currency, method, reference, created_at, updated_at FROM payments ";

Payment paymentFromRow(const Statement& row)
{
    Payment p;
    p.id = row.text(0);
    p.orderId = row.text(1);
    p.status = parsePaymentStatus(row.text(2)).value_or(PaymentStatus::Queued);
    if (!row.isNull(3)) p.reason = row.text(3);
    p.amount = row.integer(4);
    p.currency = row.text(5);
    p.method = row.text(6);
    p.reference = row.text(7);
    p.createdAt = row.text(8);
    p.updatedAt = row.text(9);
    return p;
}

}  // namespace

void OrderEvents::add(const std::string& type, const EventFields& f, const std::string& at)
{
    if (next_ == 0) {
        next_ = 1;
        w_("SELECT COALESCE(MAX(seq), 0) + 1 FROM order_events WHERE order_id = ?")
            .query([&](Statement& row) { next_ = row.integer(0); }, orderId_);
    }
    if (batched_) {
        auto value = [](const std::string& v) { return v.empty() ? std::nullopt : std::optional<std::string>(v); };
        kept_.insert(kept_.end(), {orderId_, std::to_string(next_), at, type, value(f.status), value(f.reason),
                                   value(f.step), value(f.paymentId), value(f.instance)});
    } else {
        w_("INSERT INTO order_events (order_id, seq, at, type, status, reason, step, payment_id, instance) "
           "VALUES (?, ?, ?, ?, NULLIF(?, ''), NULLIF(?, ''), NULLIF(?, ''), NULLIF(?, ''), NULLIF(?, ''))")
            .send(orderId_, next_, at, type, f.status, f.reason, f.step, f.paymentId, f.instance);
    }
    if (w_.webhooks) announceWebhooks(w_, orderId_, next_, type, f);
    ++next_;
}

void OrderEvents::keepMove(std::string_view from, std::string_view to, const std::string& reason,
                           const std::string& at)
{
    if (move_) {
        move_->to = to;
        move_->reason = reason;
        move_->at = at;
    } else {
        move_ = Move{from, to, reason, at};
    }
}

void OrderEvents::flush()
{
    // One UPDATE of the order's row: each makes a new version of it.
    // (Without a due time of its own, the step's stays as it is.)
    if (move_) {
        const std::optional<std::string> due = stepDue_ ? std::optional<std::string>(std::to_string(*stepDue_)) : std::nullopt;
        w_("UPDATE orders SET status = ?, reason = NULLIF(?, ''), updated_at = ?, "
           "step_due_at = COALESCE(CAST(? AS BIGINT), step_due_at) WHERE id = ? AND status = ?")
            .send(move_->to, move_->reason, move_->at, due, orderId_, move_->from);
    } else if (stepDue_) {
        w_("UPDATE orders SET step_due_at = ? WHERE id = ?").send(*stepDue_, orderId_);
    }
    move_.reset();
    stepDue_.reset();
    constexpr std::size_t kColumns = 9;
    const std::size_t n = kept_.size() / kColumns;
    if (n == 0) return;
    // The statement for n events, built once per n (the caches key by text).
    static const std::vector<std::string> statements = [] {
        std::vector<std::string> all(17);
        for (std::size_t k = 1; k < all.size(); ++k) {
            all[k] = "INSERT INTO order_events (order_id, seq, at, type, status, reason, step, payment_id, instance) VALUES ";
            for (std::size_t i = 0; i < k; ++i) all[k] += std::string(i ? ", " : "") + "(?, ?, ?, ?, ?, ?, ?, ?, ?)";
        }
        return all;
    }();
    if (n < statements.size()) {
        w_(statements[n]).sendTexts(kept_);
    } else {
        // More than an order's processing writes: one statement each.
        for (std::size_t i = 0; i < n; ++i) {
            const std::vector<std::optional<std::string>> one(kept_.begin() + static_cast<long>(i * kColumns),
                                                              kept_.begin() + static_cast<long>((i + 1) * kColumns));
            w_(statements[1]).sendTexts(one);
        }
    }
    kept_.clear();
}

void announceWebhooks(Statements& w, const std::string& orderId, std::int64_t seq, const std::string& type,
                      const EventFields& f)
{
    std::string eventType;
    if (type == "status") {
        static constexpr std::string_view kAnnounced[] = {"processing", "awaiting_payment", "paid", "failed", "cancelled"};
        if (std::find(std::begin(kAnnounced), std::end(kAnnounced), f.status) == std::end(kAnnounced)) return;
        eventType = "order." + f.status;
    } else if (type == "payment") {
        if (f.status != "succeeded" && f.status != "rejected") return;
        eventType = "payment." + f.status;
    } else {
        return;
    }
    for (const auto& endpoint : w.webhooks->subscribers(eventType)) {
        std::string body = R"({"endpoint_id":")" + endpoint + R"(","order_id":")" + orderId +
                           R"(","seq":)" + std::to_string(seq) + R"(,"type":")" + eventType + '"';
        if (!f.paymentId.empty()) body += R"(,"payment_id":")" + f.paymentId + '"';
        if (w.webhooks->outboxTable())
            w("INSERT INTO webhook_outbox (body, created_at) VALUES (?, ?)").send(body + "}", clock::nowMillis());
        else
            queueMessage(w, kWebhooksQueue, body + "}");
        w.webhooksQueued = true;
    }
}

namespace {

void insertMessage(Statements& w, const std::string& queue, const std::string& body, std::int64_t dueAt,
                   std::int64_t createdAt)
{
    w("INSERT INTO messages (queue, body, state, attempts, lease, due_at, created_at) VALUES (?, ?, 'ready', 0, 0, ?, ?)")
        .send(queue, body, dueAt, createdAt);
}

}  // namespace

void queueMessage(Statements& w, const std::string& queue, const std::string& body)
{
    const std::int64_t now = clock::nowMillis();
    insertMessage(w, queue, body, now, now);
}

void queueMessageAt(Statements& w, const std::string& queue, const std::string& body, std::int64_t dueAt)
{
    insertMessage(w, queue, body, dueAt, clock::nowMillis());
}

std::string orderMessage(const std::string& orderId) { return R"({"order_id":")" + orderId + R"("})"; }
std::string orderStepMessage(const std::string& orderId, const std::string& step)
{
    return R"({"order_id":")" + orderId + R"(","step":")" + step + R"("})";
}
std::string paymentMessage(const std::string& paymentId) { return R"({"payment_id":")" + paymentId + R"("})"; }

std::optional<OrderStatus> readOrderStatus(Statements& w, const std::string& id)
{
    std::optional<OrderStatus> status;
    w("SELECT status FROM orders WHERE id = ? /*FOR UPDATE*/").query([&](Statement& row) { status = parseOrderStatus(row.text(0)); }, id);
    return status;
}

bool lockOrderOfPayment(Statements& w, const std::string& paymentId)
{
    std::string orderId;
    if (w("SELECT order_id FROM payments WHERE id = ?").query([&](Statement& row) { orderId = row.text(0); },
                                                            paymentId) == 0)
        return false;
    return readOrderStatus(w, orderId).has_value();
}

std::int64_t processingCount(Statements& s)
{
    std::int64_t n = 0;
    s("SELECT value FROM work_counters WHERE name = 'processing'").query([&](Statement& row) { n = row.integer(0); });
    return n;
}

void countProcessing(Statements& w, std::int64_t delta)
{
    if (delta != 0) w("UPDATE work_counters SET value = value + ? WHERE name = 'processing'").send(delta);
}

void moveOrder(OrderEvents& events, OrderStatus from, OrderStatus to, const std::string& reason, bool count)
{
    const std::string at = clock::nowRfc3339();
    const std::string_view fromName = toString(from);
    const std::string_view toName = toString(to);
    Statements& w = events.statements();
    if (events.batched()) {
        events.keepMove(fromName, toName, reason, at);
    } else {
        w("UPDATE orders SET status = ?, reason = NULLIF(?, ''), updated_at = ? WHERE id = ? AND status = ?")
            .send(toName, reason, at, events.orderId(), fromName);
    }
    events.add("status", {std::string(toName), reason, "", "", ""}, at);
    w.tally.move("orders", fromName, toName);
    if (count) countProcessing(w, (to == OrderStatus::Processing ? 1 : 0) - (from == OrderStatus::Processing ? 1 : 0));
}

void rejectHeldPayments(OrderEvents& events)
{
    Statements& w = events.statements();
    const std::string& orderId = events.orderId();
    std::vector<std::string> ids;
    w("SELECT id FROM payments WHERE order_id = ? AND status = 'queued'")
        .query([&](Statement& row) { ids.push_back(row.text(0)); }, orderId);
    const std::string at = clock::nowRfc3339();
    const std::string reason(kOrderNotPayable);
    for (const auto& id : ids) {
        w("UPDATE payments SET status = 'rejected', reason = ?, updated_at = ? WHERE id = ?").send(reason, at, id);
        w.tally.move("payments", "queued", "rejected");
        events.add("payment", {"rejected", reason, "", id, ""}, at);
    }
}

void EventsSoFar::add(std::int64_t seq, const std::string& type, const std::string& step)
{
    nextSeq = std::max(nextSeq, seq + 1);
    if (type == "step_completed") completed.push_back(step);
    else if (type == "step_started") started.push_back(step);
}

bool isCompleted(const std::vector<std::string>& done, const std::string& step)
{
    return std::find(done.begin(), done.end(), step) != done.end();
}

void completeStepIn(OrderEvents& events, const std::string& step, const std::string& instance,
                    const std::string* items)
{
    Statements& w = events.statements();
    const std::string& id = events.orderId();
    const std::string at = clock::nowRfc3339();
    // The step's effect, in the same transaction as its ledger entry.
    if (step == "reserve_stock") {
        std::optional<std::string> read;
        if (items == nullptr) {
            w("SELECT items FROM orders WHERE id = ?").query([&](Statement& row) { read = row.text(0); }, id);
            if (!read) throw PoisonMessage("order " + id + " does not exist");
            items = &*read;
        }
        std::int64_t line = 0;
        for (const auto& item : itemsFromJson(*items)) {
            w("INSERT INTO stock_reservations (order_id, line, sku, quantity) VALUES (?, ?, ?, ?)")
                .send(id, line, item.sku, item.quantity);
            ++line;
        }
    } else if (step == "prepare_invoice") {
        w("INSERT INTO invoices (order_id, amount, currency, issued_at) "
          "SELECT id, total_amount, currency, ? FROM orders WHERE id = ?")
            .send(at, id);
    }
    events.add("step_completed", {"", "", step, "", instance}, at);
}

void finishIn(OrderEvents& events, bool& releasedPayments, bool count)
{
    Statements& w = events.statements();
    const std::string& id = events.orderId();
    releasedPayments = false;
    moveOrder(events, OrderStatus::Processing, OrderStatus::AwaitingPayment, "", count);
    // Payments that arrived while the order was being processed: queued,
    // by two statements sent without waiting (their messages are
    // paymentMessage's, spelled in SQL).
    const std::int64_t now = clock::nowMillis();
    w("INSERT INTO messages (queue, body, state, attempts, lease, due_at, created_at) "
      "SELECT 'payments', '{\"payment_id\":\"' || id || '\"}', 'ready', 0, 0, ?, ? FROM payments "
      "WHERE order_id = ? AND status = 'queued' AND dispatched = 0 ORDER BY id")
        .send(now, now, id);
    w("UPDATE payments SET dispatched = 1 WHERE order_id = ? AND status = 'queued' AND dispatched = 0").send(id);
    releasedPayments = true;  // perhaps: whoever delivers payments looks
}

std::vector<Payment> loadPayments(Statements& q, PaymentsOf of, const std::string& key)
{
    // Built once: the statement cache is keyed by the text.
    static const std::string byId = std::string(kPaymentColumns) + "WHERE id = ? ORDER BY id";
    static const std::string byOrder = std::string(kPaymentColumns) + "WHERE order_id = ? ORDER BY id";
    std::vector<Payment> payments;
    q(of == PaymentsOf::Id ? byId : byOrder)
        .query([&](Statement& row) { payments.push_back(paymentFromRow(row)); }, key);
    return payments;
}

Order orderFromRow(const Statement& row)
{
    Order o;
    o.id = row.text(0);
    o.status = parseOrderStatus(row.text(1)).value_or(OrderStatus::Queued);
    if (!row.isNull(2)) o.reason = row.text(2);
    o.customer = row.text(3);
    o.currency = row.text(4);
    o.totalAmount = row.integer(5);
    o.items = itemsFromJson(row.text(6));
    o.metadata = stringMapFromJson(row.text(7));
    o.createdAt = row.text(8);
    o.updatedAt = row.text(9);
    return o;
}

std::optional<Order> loadOrder(Statements& q, const std::string& id)
{
    static const std::string sql = std::string(kOrderColumns) + "WHERE id = ?";
    std::optional<Order> order;
    q(sql).query([&](Statement& row) { order = orderFromRow(row); }, id);
    return order;
}

}  // namespace orderpay::sql
