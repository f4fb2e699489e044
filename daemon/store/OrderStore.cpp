#include "store/OrderStore.h"

#include "domain/Clock.h"
#include "domain/Errors.h"
#include "store/JsonText.h"

#include <Poco/Data/Statement.h>

#include <algorithm>
#include <array>
#include <future>
#include <memory>

using namespace Poco::Data::Keywords;
using Poco::Data::Session;
using Poco::Data::Statement;

namespace orderpay {
namespace {

struct EventFields {
    std::string status;
    std::string reason;
    std::string step;
    std::string paymentId;
};

/// Appends one order's events. The last sequence number is read once, at
/// the first event: only the writer appends, so within one unit of work the
/// numbers follow each other (processing an order writes eight events, and
/// reading the maximum for each was a sixth of its statements).
class OrderEvents {
public:
    OrderEvents(sql::Statements& w, const std::string& orderId) : w_(w), orderId_(orderId) {}

    void add(const std::string& type, const EventFields& f, const std::string& at)
    {
        if (next_ == 0) {
            next_ = 1;
            w_("SELECT COALESCE(MAX(seq), 0) + 1 FROM order_events WHERE order_id = ?")
                .query([&](sql::Statement& row) { next_ = row.integer(0); }, orderId_);
        }
        w_("INSERT INTO order_events (order_id, seq, at, type, status, reason, step, payment_id) "
           "VALUES (?, ?, ?, ?, NULLIF(?, ''), NULLIF(?, ''), NULLIF(?, ''), NULLIF(?, ''))")
            .exec(orderId_, next_, at, type, f.status, f.reason, f.step, f.paymentId);
        ++next_;
    }
    sql::Statements& statements() const { return w_; }
    const std::string& orderId() const { return orderId_; }

private:
    sql::Statements& w_;
    const std::string& orderId_;
    std::int64_t next_ = 0;  // 0: not read yet
};

void queueMessage(sql::Statements& w, const std::string& queue, const std::string& body)
{
    const std::int64_t at = clock::nowMillis();
    w("INSERT INTO messages (queue, body, state, attempts, lease, due_at, created_at) VALUES (?, ?, 'ready', 0, 0, ?, ?)")
        .exec(queue, body, at, at);
}

std::string orderMessage(const std::string& orderId) { return R"({"order_id":")" + orderId + R"("})"; }
std::string paymentMessage(const std::string& paymentId) { return R"({"payment_id":")" + paymentId + R"("})"; }

std::optional<OrderStatus> readOrderStatus(sql::Statements& w, const std::string& id)
{
    std::optional<OrderStatus> status;
    w("SELECT status FROM orders WHERE id = ?").query([&](sql::Statement& row) { status = parseOrderStatus(row.text(0)); }, id);
    return status;
}

/// Moves an order from `from` to `to` with its status event; false (and
/// nothing written) if the order was not in `from`.
bool moveOrder(OrderEvents& events, OrderStatus from, OrderStatus to, const std::string& reason)
{
    const std::string at = clock::nowRfc3339();
    const std::string_view fromName = toString(from);
    const std::string_view toName = toString(to);
    if (events.statements()("UPDATE orders SET status = ?, reason = NULLIF(?, ''), updated_at = ? WHERE id = ? AND status = ?")
            .exec(toName, reason, at, events.orderId(), fromName) == 0)
        return false;
    events.add("status", {std::string(toName), reason, "", ""}, at);
    return true;
}

/// Rejects the payments still queued for an order that will never take them.
void rejectHeldPayments(OrderEvents& events)
{
    sql::Statements& w = events.statements();
    const std::string& orderId = events.orderId();
    std::vector<std::string> ids;
    w("SELECT id FROM payments WHERE order_id = ? AND status = 'queued'")
        .query([&](sql::Statement& row) { ids.push_back(row.text(0)); }, orderId);
    const std::string at = clock::nowRfc3339();
    const std::string reason(kOrderNotPayable);
    for (const auto& id : ids) {
        w("UPDATE payments SET status = 'rejected', reason = ?, updated_at = ? WHERE id = ?").exec(reason, at, id);
        events.add("payment", {"rejected", reason, "", id}, at);
    }
}

/// The steps of an order done so far. Their step_completed events are the
/// ledger that makes each step's effect happen once: an event is written in
/// the same transaction as its step's effect, and events are never removed.
std::vector<std::string> completedSteps(sql::Statements& s, const std::string& id)
{
    std::vector<std::string> done;
    s("SELECT step FROM order_events WHERE order_id = ? AND type = 'step_completed'")
        .query([&](sql::Statement& row) { done.push_back(row.text(0)); }, id);
    return done;
}

bool isCompleted(const std::vector<std::string>& done, const std::string& step)
{
    return std::find(done.begin(), done.end(), step) != done.end();
}

/// Does a processing step's effect and records it, for a step not done yet
/// (the caller checked completedSteps in this transaction).
void completeStepIn(OrderEvents& events, const std::string& step)
{
    sql::Statements& w = events.statements();
    const std::string& id = events.orderId();
    const std::string at = clock::nowRfc3339();
    // The step's effect, in the same transaction as its ledger entry.
    if (step == "reserve_stock") {
        std::optional<std::string> items;
        w("SELECT items FROM orders WHERE id = ?").query([&](sql::Statement& row) { items = row.text(0); }, id);
        if (!items) throw PoisonMessage("order " + id + " does not exist");
        std::int64_t line = 0;
        for (const auto& item : itemsFromJson(*items)) {
            w("INSERT INTO stock_reservations (order_id, line, sku, quantity) VALUES (?, ?, ?, ?)")
                .exec(id, line, item.sku, item.quantity);
            ++line;
        }
    } else if (step == "prepare_invoice") {
        w("INSERT INTO invoices (order_id, amount, currency, issued_at) "
          "SELECT id, total_amount, currency, ? FROM orders WHERE id = ?")
            .exec(at, id);
    }
    events.add("step_completed", {"", "", step, ""}, at);
}

/// Processing -> awaiting_payment, and the payments that arrived meanwhile
/// are queued; false (nothing written) if the order was not processing.
bool finishIn(OrderEvents& events, bool& releasedPayments)
{
    sql::Statements& w = events.statements();
    const std::string& id = events.orderId();
    releasedPayments = false;
    if (!moveOrder(events, OrderStatus::Processing, OrderStatus::AwaitingPayment, "")) return false;
    // Payments that arrived while the order was being processed.
    std::vector<std::string> held;
    w("SELECT id FROM payments WHERE order_id = ? AND status = 'queued' AND dispatched = 0 ORDER BY id")
        .query([&](sql::Statement& row) { held.push_back(row.text(0)); }, id);
    for (const auto& paymentId : held) {
        w("UPDATE payments SET dispatched = 1 WHERE id = ?").exec(paymentId);
        queueMessage(w, kPaymentsQueue, paymentMessage(paymentId));
    }
    releasedPayments = !held.empty();
    return true;
}

constexpr std::string_view kPaymentColumns =
    "SELECT id, order_id, status, reason, amount, currency, method, reference, created_at, updated_at FROM payments ";

Payment paymentFromRow(const sql::Statement& row)
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

enum class PaymentsOf { Id, Order };

/// The payment with id `key`, or the payments of order `key`, by id.
std::vector<Payment> loadPayments(sql::Statements& q, PaymentsOf of, const std::string& key)
{
    // Built once: the statement cache is keyed by the text.
    static const std::string byId = std::string(kPaymentColumns) + "WHERE id = ? ORDER BY id";
    static const std::string byOrder = std::string(kPaymentColumns) + "WHERE order_id = ? ORDER BY id";
    std::vector<Payment> payments;
    q(of == PaymentsOf::Id ? byId : byOrder)
        .query([&](sql::Statement& row) { payments.push_back(paymentFromRow(row)); }, key);
    return payments;
}

constexpr std::string_view kOrderColumns =
    "SELECT id, status, reason, customer, currency, total_amount, items, metadata, created_at, updated_at FROM orders ";

Order orderFromRow(const sql::Statement& row)
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

/// Orders selected by `sql` (kOrderColumns and a tail), its parameters
/// bound in order.
template <typename... T>
std::vector<Order> loadOrders(sql::Statements& q, const std::string& sql, const T&... params)
{
    std::vector<Order> orders;
    q(sql).query([&](sql::Statement& row) { orders.push_back(orderFromRow(row)); }, params...);
    return orders;
}

const std::string& orderById()
{
    static const std::string sql = std::string(kOrderColumns) + "WHERE id = ?";
    return sql;
}

void loadEvents(sql::Statements& q, Order& order)
{
    q("SELECT at, type, status, reason, step, payment_id FROM order_events WHERE order_id = ? ORDER BY seq")
        .query(
            [&](sql::Statement& row) {
                OrderEvent e{row.text(0), row.text(1), {}};
                if (!row.isNull(5)) e.fields.emplace_back("payment_id", row.text(5));
                if (!row.isNull(4)) e.fields.emplace_back("step", row.text(4));
                if (!row.isNull(2)) e.fields.emplace_back("status", row.text(2));
                if (!row.isNull(3)) e.fields.emplace_back("reason", row.text(3));
                order.events.push_back(std::move(e));
            },
            order.id);
}

/// Reads in one transaction on this thread's read connection, so an
/// order, its payments and its events come from the same commit.
template <typename F>
auto readTransaction(Database& db, F&& f)
{
    sql::Statements& q = db.localReader();
    q("BEGIN").exec();
    try {
        auto result = f(q);
        q("COMMIT").exec();
        return result;
    } catch (...) {
        try {
            q("ROLLBACK").exec();
        } catch (...) {
            // Nothing was written; the snapshot ends with the next BEGIN's error at worst.
        }
        throw;
    }
}

}  // namespace

OrderStore::OrderStore(Database& db, Committer& committer) : db_(db), committer_(committer) {}

void OrderStore::setMessageListener(std::function<void(const std::string&)> listener)
{
    listener_ = std::move(listener);
}

void OrderStore::notify(const std::string& queue)
{
    if (listener_) listener_(queue);
}

std::optional<StoredAnswer> OrderStore::checkIdempotency(Session&, const IdempotencyRecord& idem)
{
    sql::Statements& w = db_.writes();
    std::optional<StoredAnswer> stored;
    std::string hash;
    std::int64_t created = 0;
    w("SELECT request_hash, status, location, body, created_at FROM idempotency_keys WHERE key = ?")
        .query(
            [&](sql::Statement& row) {
                hash = row.text(0);
                stored = StoredAnswer{static_cast<int>(row.integer(1)), row.text(2), row.text(3)};
                created = row.integer(4);
            },
            idem.key);
    if (!stored) return std::nullopt;
    if (clock::nowMillis() - created > idem.ttlMillis) {
        // Expired: the key is free again.
        w("DELETE FROM idempotency_keys WHERE key = ?").exec(idem.key);
        return std::nullopt;
    }
    if (hash != idem.requestHash) {
        throw IdempotencyMismatch("this Idempotency-Key was used with a different request");
    }
    return stored;
}

void OrderStore::rememberAnswer(Session&, const IdempotencyRecord& idem)
{
    db_.writes()("INSERT INTO idempotency_keys (key, request_hash, status, location, body, created_at) "
                 "VALUES (?, ?, ?, ?, ?, ?)")
        .exec(idem.key, idem.requestHash, static_cast<std::int64_t>(idem.answer.status), idem.answer.location,
              idem.answer.body, clock::nowMillis());
}

namespace {

/// Waits for a write that reports through a Written callback.
std::optional<StoredAnswer> awaitWritten(const std::function<void(OrderStore::Written)>& write)
{
    std::promise<std::optional<StoredAnswer>> outcome;
    write([&](std::optional<StoredAnswer> replay, std::exception_ptr error) {
        if (error) outcome.set_exception(error);
        else outcome.set_value(std::move(replay));
    });
    return outcome.get_future().get();
}

}  // namespace

void OrderStore::createOrder(Order order, std::optional<IdempotencyRecord> idem, Written then)
{
    struct Write {
        Order order;
        std::optional<IdempotencyRecord> idem;
        std::string items, metadata, message;
        std::optional<StoredAnswer> replay;
    };
    std::shared_ptr<Write> r;
    try {
        r = std::make_shared<Write>(Write{std::move(order), std::move(idem), {}, {}, {}, {}});
        // Rendered here, on the request's thread: the writer is one thread for all.
        r->items = itemsToJson(r->order.items);
        r->metadata = stringMapToJson(r->order.metadata);
        r->message = orderMessage(r->order.id);
    } catch (...) {
        return then(std::nullopt, std::current_exception());
    }
    committer_.submit(
        [this, r](Session& s) {
            if (r->idem && (r->replay = checkIdempotency(s, *r->idem))) return;
            const Order& o = r->order;
            sql::Statements& w = db_.writes();
            w("INSERT INTO orders (id, status, reason, customer, currency, total_amount, items, metadata, "
              "created_at, updated_at) VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)")
                .exec(o.id, toString(o.status), o.customer, o.currency, o.totalAmount, r->items, r->metadata,
                      o.createdAt, o.updatedAt);
            // A new order's first event: no earlier one to count.
            w("INSERT INTO order_events (order_id, seq, at, type, status) VALUES (?, 1, ?, 'status', ?)")
                .exec(o.id, o.createdAt, toString(o.status));
            queueMessage(w, kOrdersQueue, r->message);
            if (r->idem) rememberAnswer(s, *r->idem);
        },
        [this, r, then = std::move(then)](std::exception_ptr error) {
            if (!error && !r->replay) notify(kOrdersQueue);
            then(std::move(r->replay), error);
        });
}

std::optional<StoredAnswer> OrderStore::createOrder(const Order& order, const std::optional<IdempotencyRecord>& idem)
{
    return awaitWritten([&](Written then) { createOrder(order, idem, std::move(then)); });
}

void OrderStore::createPayment(Payment payment, std::optional<IdempotencyRecord> idem, Written then)
{
    struct Write {
        Payment payment;
        std::optional<IdempotencyRecord> idem;
        std::optional<StoredAnswer> replay;
        bool queued = false;
    };
    std::shared_ptr<Write> r;
    try {
        r = std::make_shared<Write>(Write{std::move(payment), std::move(idem), {}, false});
    } catch (...) {
        return then(std::nullopt, std::current_exception());
    }
    committer_.submit(
        [this, r](Session& s) {
            if (r->idem && (r->replay = checkIdempotency(s, *r->idem))) return;
            const Payment& p = r->payment;
            const auto orderStatus = readOrderStatus(db_.writes(), p.orderId);
            if (!orderStatus) throw NotFound("order " + p.orderId + " does not exist");
            if (refusesPayments(*orderStatus)) {
                throw Conflict("order " + p.orderId + " is " + std::string(toString(*orderStatus)) +
                               " and takes no more payments");
            }
            r->queued = !holdsPayments(*orderStatus);  // awaiting_payment: queue it now
            db_.writes()("INSERT INTO payments (id, order_id, status, reason, amount, currency, method, reference, "
                         "dispatched, created_at, updated_at) VALUES (?, ?, 'queued', NULL, ?, ?, ?, ?, ?, ?, ?)")
                .exec(p.id, p.orderId, static_cast<std::int64_t>(p.amount), p.currency, p.method, p.reference,
                      static_cast<std::int64_t>(r->queued ? 1 : 0), p.createdAt, p.updatedAt);
            if (r->queued) queueMessage(db_.writes(), kPaymentsQueue, paymentMessage(p.id));
            if (r->idem) rememberAnswer(s, *r->idem);
        },
        [this, r, then = std::move(then)](std::exception_ptr error) {
            if (!error && r->queued && !r->replay) notify(kPaymentsQueue);
            then(std::move(r->replay), error);
        });
}

std::optional<StoredAnswer> OrderStore::createPayment(const Payment& payment,
                                                      const std::optional<IdempotencyRecord>& idem)
{
    return awaitWritten([&](Written then) { createPayment(payment, idem, std::move(then)); });
}

void OrderStore::cancelOrder(const std::string& id, Done then)
{
    committer_.submit(
        [this, id](Session&) {
            const auto status = readOrderStatus(db_.writes(), id);
            if (!status) throw NotFound("order " + id + " does not exist");
            OrderEvents events(db_.writes(), id);
            if (!canTransition(*status, OrderStatus::Cancelled) ||
                !moveOrder(events, *status, OrderStatus::Cancelled, "cancelled by request")) {
                throw Conflict("order " + id + " is " + std::string(toString(*status)) +
                               "; only a queued or awaiting_payment order can be cancelled");
            }
            rejectHeldPayments(events);
        },
        std::move(then));
}

Order OrderStore::cancelOrder(const std::string& id)
{
    std::promise<void> done;
    cancelOrder(id, [&done](std::exception_ptr error) {
        if (error) done.set_exception(error);
        else done.set_value();
    });
    done.get_future().get();
    auto order = getOrder(id);
    if (!order) throw NotFound("order " + id + " does not exist");
    return *order;
}

std::optional<Order> OrderStore::getOrder(const std::string& id)
{
    return readTransaction(db_, [&](sql::Statements& q) -> std::optional<Order> {
        auto orders = loadOrders(q, orderById(), id);
        if (orders.empty()) return std::nullopt;
        Order& order = orders.front();
        order.payments = loadPayments(q, PaymentsOf::Order, id);
        loadEvents(q, order);
        return std::move(order);
    });
}

std::optional<Payment> OrderStore::getPayment(const std::string& id)
{
    return readTransaction(db_, [&](sql::Statements& q) -> std::optional<Payment> {
        auto payments = loadPayments(q, PaymentsOf::Id, id);
        if (payments.empty()) return std::nullopt;
        return payments.front();
    });
}

std::vector<Order> OrderStore::listOrders(std::optional<OrderStatus> status, int limit, const std::string& after)
{
    // The four statements, built once (by status or not, after an id or not).
    static const std::array<std::string, 4> queries{
        std::string(kOrderColumns) + listFilter(false, false), std::string(kOrderColumns) + listFilter(false, true),
        std::string(kOrderColumns) + listFilter(true, false), std::string(kOrderColumns) + listFilter(true, true)};
    const std::string& sql = queries[(status ? 2 : 0) + (after.empty() ? 0 : 1)];
    const std::int64_t n = limit;
    return readTransaction(db_, [&](sql::Statements& q) {
        const std::string statusName = status ? std::string(toString(*status)) : std::string();
        if (status && !after.empty()) return loadOrders(q, sql, statusName, after, n);
        if (status) return loadOrders(q, sql, statusName, n);
        if (!after.empty()) return loadOrders(q, sql, after, n);
        return loadOrders(q, sql, n);
    });
}

std::string OrderStore::listFilter(bool byStatus, bool afterId)
{
    // Served by orders_by_status (status, id) or the primary key (id): the
    // newest-first page is read in index order, never sorted.
    std::string tail = "WHERE 1";
    if (byStatus) tail += " AND status = ?";
    if (afterId) tail += " AND id < ?";
    return tail + " ORDER BY id DESC LIMIT ?";
}

OrderStatus OrderStore::startProcessing(const std::string& id)
{
    OrderStatus after = OrderStatus::Queued;
    committer_.write([&](Session&) {
        const auto status = readOrderStatus(db_.writes(), id);
        if (!status) throw PoisonMessage("order " + id + " does not exist");
        after = *status;
        OrderEvents events(db_.writes(), id);
        if (*status == OrderStatus::Queued && moveOrder(events, OrderStatus::Queued, OrderStatus::Processing, "")) {
            after = OrderStatus::Processing;
        }
    });
    return after;
}

bool OrderStore::isStepCompleted(const std::string& id, const std::string& step)
{
    return isCompleted(completedSteps(db_.localReader(), id), step);
}

void OrderStore::recordStepStarted(const std::string& id, const std::string& step)
{
    committer_.write([&](Session&) {
        OrderEvents(db_.writes(), id).add("step_started", {"", "", step, ""}, clock::nowRfc3339());
    });
}

bool OrderStore::completeStep(const std::string& id, const std::string& step)
{
    bool done = false;
    committer_.write([&](Session&) {
        if (isCompleted(completedSteps(db_.writes(), id), step)) return;  // done before: a redelivery
        OrderEvents events(db_.writes(), id);
        completeStepIn(events, step);
        done = true;
    });
    return done;
}

bool OrderStore::finishProcessing(const std::string& id)
{
    bool moved = false;
    bool releasedPayments = false;
    committer_.write([&](Session&) {
        OrderEvents events(db_.writes(), id);
        moved = finishIn(events, releasedPayments);
    });
    if (releasedPayments) notify(kPaymentsQueue);
    return moved;
}


Committer::Work OrderStore::instantUnit(const std::string& id, const std::vector<std::string>& steps,
                                       InstantResult& result)
{
    return [this, &id, &steps, &result](Session&) {
        sql::Statements& w = db_.writes();
        result = InstantResult{};
        const auto status = readOrderStatus(w, id);
        if (!status) throw PoisonMessage("order " + id + " does not exist");
        result.before = *status;
        OrderEvents events(w, id);
        if (*status == OrderStatus::Queued) {
            moveOrder(events, OrderStatus::Queued, OrderStatus::Processing, "");
        } else if (*status != OrderStatus::Processing) {
            return;  // cancelled, or finished before: a redelivery
        }
        // Steps done by an earlier delivery; a queued order has none.
        const auto done = *status == OrderStatus::Processing ? completedSteps(w, id) : std::vector<std::string>{};
        for (const auto& step : steps) {
            if (isCompleted(done, step)) continue;
            events.add("step_started", {"", "", step, ""}, clock::nowRfc3339());
            completeStepIn(events, step);
            result.stepsRun.push_back(step);
        }
        result.finished = finishIn(events, result.releasedPayments);
    };
}

OrderStore::InstantResult OrderStore::processInstantly(const std::string& id, const std::vector<std::string>& steps)
{
    InstantResult result;
    committer_.write(instantUnit(id, steps, result));
    if (result.releasedPayments) notify(kPaymentsQueue);
    return result;
}

std::vector<OrderStore::InstantOutcome> OrderStore::processInstantly(const std::vector<std::string>& ids,
                                                                     const std::vector<std::string>& steps)
{
    std::vector<InstantOutcome> outcomes(ids.size());
    std::vector<Committer::Work> units;
    units.reserve(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) units.push_back(instantUnit(ids[i], steps, outcomes[i].result));
    const auto errors = committer_.writeAll(std::move(units));
    bool anyReleased = false;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        outcomes[i].error = errors[i];
        anyReleased = anyReleased || (!errors[i] && outcomes[i].result.releasedPayments);
    }
    if (anyReleased) notify(kPaymentsQueue);
    return outcomes;
}

bool OrderStore::failOrder(const std::string& id, const std::string& reason)
{
    bool moved = false;
    committer_.write([&](Session&) {
        const auto status = readOrderStatus(db_.writes(), id);
        if (!status || isFinal(*status)) return;
        OrderEvents events(db_.writes(), id);
        moved = moveOrder(events, *status, OrderStatus::Failed, reason);
        if (moved) rejectHeldPayments(events);
    });
    return moved;
}

bool OrderStore::startPayment(const std::string& id)
{
    bool started = false;
    committer_.write([&](Session&) {
        sql::Statements& w = db_.writes();
        std::string status;
        const int found = w("SELECT status FROM payments WHERE id = ?")
                              .query([&](sql::Statement& row) { status = row.text(0); }, id);
        if (found == 0) throw PoisonMessage("payment " + id + " does not exist");
        if (status == "queued") {
            w("UPDATE payments SET status = 'processing', updated_at = ? WHERE id = ?").exec(clock::nowRfc3339(), id);
        }
        started = status == "queued" || status == "processing";
    });
    return started;
}

PaymentOutcome OrderStore::settlePayment(const std::string& id)
{
    PaymentOutcome outcome;
    committer_.write([&](Session&) {
        sql::Statements& w = db_.writes();
        outcome = PaymentOutcome{};
        auto payments = loadPayments(w, PaymentsOf::Id, id);
        if (payments.empty()) throw PoisonMessage("payment " + id + " does not exist");
        const Payment& payment = payments.front();
        outcome.orderId = payment.orderId;
        if (isFinal(payment.status)) {
            outcome.status = payment.status;
            outcome.reason = payment.reason;
            outcome.alreadyFinal = true;
            return;
        }
        auto orders = loadOrders(w, orderById(), payment.orderId);
        if (orders.empty()) throw PoisonMessage("order " + payment.orderId + " does not exist");
        bool sameReference = false;
        w("SELECT 1 FROM payments WHERE reference = ? AND status = 'succeeded' AND id <> ? LIMIT 1")
            .query([&](sql::Statement&) { sameReference = true; }, payment.reference, id);

        const auto rejection = paymentRejection(orders.front(), payment, sameReference);
        const std::string at = clock::nowRfc3339();
        OrderEvents events(w, payment.orderId);
        if (rejection) {
            const std::string reason(*rejection);
            w("UPDATE payments SET status = 'rejected', reason = ?, updated_at = ? WHERE id = ?").exec(reason, at, id);
            events.add("payment", {"rejected", reason, "", id}, at);
            outcome.status = PaymentStatus::Rejected;
            outcome.reason = reason;
        } else {
            w("UPDATE payments SET status = 'succeeded', updated_at = ? WHERE id = ?").exec(at, id);
            events.add("payment", {"succeeded", "", "", id}, at);
            if (!moveOrder(events, OrderStatus::AwaitingPayment, OrderStatus::Paid, "")) {
                throw std::logic_error("order " + payment.orderId + " left awaiting_payment mid-transaction");
            }
            outcome.status = PaymentStatus::Succeeded;
        }
    });
    return outcome;
}

void OrderStore::abandonPayment(const std::string& id)
{
    committer_.write([&](Session&) {
        sql::Statements& w = db_.writes();
        auto payments = loadPayments(w, PaymentsOf::Id, id);
        if (payments.empty() || isFinal(payments.front().status)) return;
        const std::string at = clock::nowRfc3339();
        const std::string reason(kProcessingFailed);
        w("UPDATE payments SET status = 'rejected', reason = ?, updated_at = ? WHERE id = ?").exec(reason, at, id);
        OrderEvents(w, payments.front().orderId).add("payment", {"rejected", reason, "", id}, at);
    });
}

std::string OrderStore::statusCountQuery(const std::string& table)
{
    return "SELECT status, COUNT(*) FROM " + table + " GROUP BY status";
}

std::map<std::string, std::int64_t> OrderStore::countByStatus(const std::string& table)
{
    Session s = db_.reader();
    std::vector<std::string> statuses;
    std::vector<Poco::Int64> counts;
    s << statusCountQuery(table), into(statuses), into(counts), now;
    std::map<std::string, std::int64_t> result;
    for (std::size_t i = 0; i < statuses.size(); ++i) result[statuses[i]] = counts[i];
    return result;
}

std::map<std::string, std::int64_t> OrderStore::orderCounts() { return countByStatus("orders"); }

std::map<std::string, std::int64_t> OrderStore::paymentCounts() { return countByStatus("payments"); }

int OrderStore::purgeIdempotencyKeys(std::int64_t olderThanMillis)
{
    int purged = 0;
    committer_.write([&](Session& s) {
        const Poco::Int64 cutoff = olderThanMillis;
        Statement st(s);
        st << "DELETE FROM idempotency_keys WHERE created_at < ?", useRef(cutoff);
        purged = static_cast<int>(st.execute());
    });
    return purged;
}

void OrderStore::probeWritable(std::function<void(bool writable)> then)
{
    committer_.submit(
        [](Session& s) {
            const Poco::Int64 at = clock::nowMillis();
            s << "INSERT OR REPLACE INTO health_probe (id, at) VALUES (1, ?)", useRef(at), now;
        },
        [then = std::move(then)](std::exception_ptr error) { then(!error); });
}

}  // namespace orderpay
