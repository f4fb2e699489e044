#include "store/sql/SqlApiStore.h"

#include "domain/Clock.h"
#include "domain/Errors.h"
#include "domain/Queues.h"
#include "store/JsonText.h"
#include "store/sql/OrderRows.h"

#include <array>
#include <memory>

namespace orderpay::sql {
namespace {

void loadEvents(Statements& q, Order& order)
{
    q("SELECT at, type, status, reason, step, payment_id, instance FROM order_events WHERE order_id = ? ORDER BY seq")
        .query(
            [&](Statement& row) {
                OrderEvent e{row.text(0), row.text(1), {}};
                if (!row.isNull(5)) e.fields.emplace_back("payment_id", row.text(5));
                if (!row.isNull(4)) e.fields.emplace_back("step", row.text(4));
                if (!row.isNull(2)) e.fields.emplace_back("status", row.text(2));
                if (!row.isNull(3)) e.fields.emplace_back("reason", row.text(3));
                if (!row.isNull(6)) e.fields.emplace_back("instance", row.text(6));
                order.events.push_back(std::move(e));
            },
            order.id);
}

/// Orders selected by `sql` (kOrderColumns and a tail), its parameters
/// bound in order.
template <typename... T>
std::vector<Order> loadOrders(Statements& q, const std::string& sql, const T&... params)
{
    std::vector<Order> orders;
    q(sql).query([&](Statement& row) { orders.push_back(orderFromRow(row)); }, params...);
    return orders;
}

}  // namespace

SqlApiStore::SqlApiStore(Readers& readers, Committer& committer, const MessageSignal& published)
    : readers_(readers), committer_(committer), published_(published)
{
}

std::optional<StoredAnswer> SqlApiStore::claimIdempotency(Statements& w, const IdempotencyRecord& idem)
{
    const std::int64_t now = clock::nowMillis();
    const auto status = static_cast<std::int64_t>(idem.answer.status);
    if (w("INSERT INTO idempotency_keys (key, request_hash, status, location, body, created_at) "
          "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING")
            .exec(idem.key, idem.requestHash, status, idem.answer.location, idem.answer.body, now) == 1)
        return std::nullopt;
    std::optional<StoredAnswer> stored;
    std::string hash;
    std::int64_t created = 0;
    w("SELECT request_hash, status, location, body, created_at FROM idempotency_keys WHERE key = ? /*FOR UPDATE*/")
        .query(
            [&](Statement& row) {
                hash = row.text(0);
                stored = StoredAnswer{static_cast<int>(row.integer(1)), row.text(2), row.text(3)};
                created = row.integer(4);
            },
            idem.key);
    if (!stored || now - created > idem.ttlMillis) {
        // Expired (or purged meanwhile): the key is this request's now.
        w("INSERT INTO idempotency_keys (key, request_hash, status, location, body, created_at) "
          "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET request_hash = excluded.request_hash, "
          "status = excluded.status, location = excluded.location, body = excluded.body, "
          "created_at = excluded.created_at")
            .send(idem.key, idem.requestHash, status, idem.answer.location, idem.answer.body, now);
        return std::nullopt;
    }
    if (hash != idem.requestHash) {
        throw IdempotencyMismatch("this Idempotency-Key was used with a different request");
    }
    return stored;
}

void SqlApiStore::createOrder(Order order, std::optional<IdempotencyRecord> idem, Written then)
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
        [r](Statements& w) {
            if (r->idem && (r->replay = claimIdempotency(w, *r->idem))) return;
            const Order& o = r->order;
            w("INSERT INTO orders (id, status, reason, customer, currency, total_amount, items, metadata, "
              "created_at, updated_at) VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)")
                .send(o.id, toString(o.status), o.customer, o.currency, o.totalAmount, r->items, r->metadata,
                      o.createdAt, o.updatedAt);
            w.tally.add("orders", toString(o.status));
            // A new order's first event: no earlier one to count.
            w("INSERT INTO order_events (order_id, seq, at, type, status) VALUES (?, 1, ?, 'status', ?)")
                .send(o.id, o.createdAt, toString(o.status));
            queueMessage(w, kOrdersQueue, r->message);
        },
        [this, r, then = std::move(then)](std::exception_ptr error) {
            if (!error && !r->replay) published_(kOrdersQueue);
            then(std::move(r->replay), error);
        });
}

void SqlApiStore::createPayment(Payment payment, std::optional<IdempotencyRecord> idem, Written then)
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
        [r](Statements& w) {
            if (r->idem && (r->replay = claimIdempotency(w, *r->idem))) return;
            const Payment& p = r->payment;
            const auto orderStatus = readOrderStatus(w, p.orderId);
            if (!orderStatus) throw NotFound("order " + p.orderId + " does not exist");
            if (refusesPayments(*orderStatus)) {
                throw Conflict("order " + p.orderId + " is " + std::string(toString(*orderStatus)) +
                               " and takes no more payments");
            }
            r->queued = !holdsPayments(*orderStatus);  // awaiting_payment: queue it now
            w("INSERT INTO payments (id, order_id, status, reason, amount, currency, method, reference, "
              "dispatched, created_at, updated_at) VALUES (?, ?, 'queued', NULL, ?, ?, ?, ?, ?, ?, ?)")
                .send(p.id, p.orderId, static_cast<std::int64_t>(p.amount), p.currency, p.method, p.reference,
                      static_cast<std::int64_t>(r->queued ? 1 : 0), p.createdAt, p.updatedAt);
            w.tally.add("payments", "queued");
            if (r->queued) queueMessage(w, kPaymentsQueue, paymentMessage(p.id));
        },
        [this, r, then = std::move(then)](std::exception_ptr error) {
            if (!error && r->queued && !r->replay) published_(kPaymentsQueue);
            then(std::move(r->replay), error);
        });
}

void SqlApiStore::cancelOrder(const std::string& id, Done then)
{
    committer_.submit(
        [id](Statements& w) {
            const auto status = readOrderStatus(w, id);
            if (!status) throw NotFound("order " + id + " does not exist");
            OrderEvents events(w, id);
            if (!canTransition(*status, OrderStatus::Cancelled)) {
                throw Conflict("order " + id + " is " + std::string(toString(*status)) +
                               "; only a queued or awaiting_payment order can be cancelled");
            }
            moveOrder(events, *status, OrderStatus::Cancelled, "cancelled by request");
            rejectHeldPayments(events);
        },
        std::move(then));
}

std::optional<Order> SqlApiStore::getOrder(const std::string& id)
{
    return readTransaction(readers_, [&](Statements& q) -> std::optional<Order> {
        auto order = loadOrder(q, id);
        if (!order) return std::nullopt;
        order->payments = loadPayments(q, PaymentsOf::Order, id);
        loadEvents(q, *order);
        return order;
    });
}

std::optional<Payment> SqlApiStore::getPayment(const std::string& id)
{
    return readTransaction(readers_, [&](Statements& q) -> std::optional<Payment> {
        auto payments = loadPayments(q, PaymentsOf::Id, id);
        if (payments.empty()) return std::nullopt;
        return payments.front();
    });
}

std::vector<Order> SqlApiStore::listOrders(std::optional<OrderStatus> status, int limit, const std::string& after)
{
    // The four statements, built once (by status or not, after an id or not).
    static const std::array<std::string, 4> queries{
        std::string(kOrderColumns) + listFilter(false, false), std::string(kOrderColumns) + listFilter(false, true),
        std::string(kOrderColumns) + listFilter(true, false), std::string(kOrderColumns) + listFilter(true, true)};
    const std::string& sql = queries[(status ? 2 : 0) + (after.empty() ? 0 : 1)];
    const std::int64_t n = limit;
    return readTransaction(readers_, [&](Statements& q) {
        const std::string statusName = status ? std::string(toString(*status)) : std::string();
        if (status && !after.empty()) return loadOrders(q, sql, statusName, after, n);
        if (status) return loadOrders(q, sql, statusName, n);
        if (!after.empty()) return loadOrders(q, sql, after, n);
        return loadOrders(q, sql, n);
    });
}

std::string SqlApiStore::listFilter(bool byStatus, bool afterId)
{
    // Served by orders_by_status (status, id) or the primary key (id): the
    // newest-first page is read in index order, never sorted.
    std::string tail = "WHERE 1 = 1";
    if (byStatus) tail += " AND status = ?";
    if (afterId) tail += " AND id < ?";
    return tail + " ORDER BY id DESC LIMIT ?";
}

}  // namespace orderpay::sql
