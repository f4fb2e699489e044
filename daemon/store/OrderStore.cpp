#include "store/OrderStore.h"

#include "domain/Clock.h"
#include "domain/Errors.h"
#include "store/JsonText.h"

#include <Poco/Data/Statement.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <sstream>

using namespace Poco::Data::Keywords;
using Poco::Data::Session;
using Poco::Data::Statement;

namespace orderpay {
namespace {

std::string itemsToJson(const std::vector<OrderItem>& items)
{
    Poco::JSON::Array array;
    for (const auto& item : items) {
        Poco::JSON::Object o(Poco::JSON_PRESERVE_KEY_ORDER);
        o.set("sku", item.sku);
        o.set("quantity", item.quantity);
        o.set("unit_amount", item.unitAmount);
        array.add(o);
    }
    std::ostringstream out;
    array.stringify(out);
    return out.str();
}

std::vector<OrderItem> itemsFromJson(const std::string& text)
{
    std::vector<OrderItem> items;
    Poco::JSON::Parser parser;
    auto array = parser.parse(text).extract<Poco::JSON::Array::Ptr>();
    for (std::size_t i = 0; i < array->size(); ++i) {
        auto o = array->getObject(static_cast<unsigned>(i));
        items.push_back({o->getValue<std::string>("sku"), o->getValue<Poco::Int64>("quantity"),
                         o->getValue<Poco::Int64>("unit_amount")});
    }
    return items;
}

std::optional<std::string> nullIfEmpty(const std::string& s)
{
    if (s.empty()) return std::nullopt;
    return s;
}

struct EventFields {
    std::string status;
    std::string reason;
    std::string step;
    std::string paymentId;
};

void addEvent(Session& s, const std::string& orderId, const std::string& type, const EventFields& f,
              const std::string& at)
{
    Poco::Int64 seq = 0;
    s << "SELECT COALESCE(MAX(seq), 0) + 1 FROM order_events WHERE order_id = ?", useRef(orderId), into(seq), now;
    s << "INSERT INTO order_events (order_id, seq, at, type, status, reason, step, payment_id) "
         "VALUES (?, ?, ?, ?, NULLIF(?, ''), NULLIF(?, ''), NULLIF(?, ''), NULLIF(?, ''))",
        useRef(orderId), useRef(seq), useRef(at), useRef(type), useRef(f.status), useRef(f.reason), useRef(f.step), useRef(f.paymentId), now;
}

void queueMessage(Session& s, const std::string& queue, const std::string& body)
{
    const Poco::Int64 at = clock::nowMillis();
    s << "INSERT INTO messages (queue, body, state, attempts, lease, due_at, created_at) "
         "VALUES (?, ?, 'ready', 0, 0, ?, ?)",
        useRef(queue), useRef(body), useRef(at), useRef(at), now;
}

std::string orderMessage(const std::string& orderId) { return R"({"order_id":")" + orderId + R"("})"; }
std::string paymentMessage(const std::string& paymentId) { return R"({"payment_id":")" + paymentId + R"("})"; }

std::optional<OrderStatus> readOrderStatus(Session& s, const std::string& id)
{
    std::string status;
    Statement st(s);
    st << "SELECT status FROM orders WHERE id = ?", useRef(id), into(status);
    if (st.execute() == 0) return std::nullopt;
    return parseOrderStatus(status);
}

/// Moves an order from `from` to `to` with its status event; false (and
/// nothing written) if the order was not in `from`.
bool moveOrder(Session& s, const std::string& id, OrderStatus from, OrderStatus to, const std::string& reason)
{
    const std::string at = clock::nowRfc3339();
    const std::string fromName(toString(from));
    const std::string toName(toString(to));
    Statement st(s);
    st << "UPDATE orders SET status = ?, reason = NULLIF(?, ''), updated_at = ? WHERE id = ? AND status = ?",
        useRef(toName), useRef(reason), useRef(at), useRef(id), useRef(fromName);
    if (st.execute() == 0) return false;
    addEvent(s, id, "status", {toName, reason, "", ""}, at);
    return true;
}

/// Rejects the payments still queued for an order that will never take them.
void rejectHeldPayments(Session& s, const std::string& orderId)
{
    std::vector<std::string> ids;
    s << "SELECT id FROM payments WHERE order_id = ? AND status = 'queued'", useRef(orderId), into(ids), now;
    const std::string at = clock::nowRfc3339();
    const std::string reason(kOrderNotPayable);
    for (const auto& id : ids) {
        s << "UPDATE payments SET status = 'rejected', reason = ?, updated_at = ? WHERE id = ?", useRef(reason), useRef(at),
            useRef(id), now;
        addEvent(s, orderId, "payment", {"rejected", reason, "", id}, at);
    }
}

std::vector<Payment> loadPayments(Session& s, const std::string& where, const std::string& key)
{
    std::vector<std::string> ids, orderIds, statuses, reasons, currencies, methods, references, created, updated;
    std::vector<Poco::Int64> amounts;
    s << "SELECT id, order_id, status, COALESCE(reason, ''), amount, currency, method, reference, created_at, "
         "updated_at FROM payments WHERE " +
             where + " ORDER BY id",
        useRef(key), into(ids), into(orderIds), into(statuses), into(reasons), into(amounts), into(currencies),
        into(methods), into(references), into(created), into(updated), now;
    std::vector<Payment> payments(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
        Payment& p = payments[i];
        p.id = ids[i];
        p.orderId = orderIds[i];
        p.status = parsePaymentStatus(statuses[i]).value_or(PaymentStatus::Queued);
        p.reason = nullIfEmpty(reasons[i]);
        p.amount = amounts[i];
        p.currency = currencies[i];
        p.method = methods[i];
        p.reference = references[i];
        p.createdAt = created[i];
        p.updatedAt = updated[i];
    }
    return payments;
}

std::vector<Order> loadOrders(Session& s, const std::string& sqlTail, const std::vector<std::string>& params)
{
    std::vector<std::string> ids, statuses, reasons, customers, currencies, items, metadata, created, updated;
    std::vector<Poco::Int64> totals;
    Statement st(s);
    st << "SELECT id, status, COALESCE(reason, ''), customer, currency, total_amount, items, metadata, created_at, "
          "updated_at FROM orders " +
              sqlTail,
        into(ids), into(statuses), into(reasons), into(customers), into(currencies), into(totals), into(items),
        into(metadata), into(created), into(updated);
    for (const auto& p : params) st.addBind(useRef(p));
    st.execute();
    std::vector<Order> orders(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
        Order& o = orders[i];
        o.id = ids[i];
        o.status = parseOrderStatus(statuses[i]).value_or(OrderStatus::Queued);
        o.reason = nullIfEmpty(reasons[i]);
        o.customer = customers[i];
        o.currency = currencies[i];
        o.totalAmount = totals[i];
        o.items = itemsFromJson(items[i]);
        o.metadata = stringMapFromJson(metadata[i]);
        o.createdAt = created[i];
        o.updatedAt = updated[i];
    }
    return orders;
}

void loadEvents(Session& s, Order& order)
{
    std::vector<std::string> at, type, status, reason, step, paymentId;
    s << "SELECT at, type, COALESCE(status, ''), COALESCE(reason, ''), COALESCE(step, ''), COALESCE(payment_id, '') "
         "FROM order_events WHERE order_id = ? ORDER BY seq",
        useRef(order.id), into(at), into(type), into(status), into(reason), into(step), into(paymentId), now;
    for (std::size_t i = 0; i < at.size(); ++i) {
        OrderEvent e{at[i], type[i], {}};
        if (!paymentId[i].empty()) e.fields.emplace_back("payment_id", paymentId[i]);
        if (!step[i].empty()) e.fields.emplace_back("step", step[i]);
        if (!status[i].empty()) e.fields.emplace_back("status", status[i]);
        if (!reason[i].empty()) e.fields.emplace_back("reason", reason[i]);
        order.events.push_back(std::move(e));
    }
}

/// Reads in one transaction, so an order, its payments and its events
/// come from the same commit.
template <typename F>
auto readTransaction(Database& db, F&& f)
{
    Session s = db.reader();
    s << "BEGIN", now;
    try {
        auto result = f(s);
        s << "COMMIT", now;
        return result;
    } catch (...) {
        try {
            s << "ROLLBACK", now;
        } catch (...) {
            // The read transaction is gone with the session either way.
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

std::optional<StoredAnswer> OrderStore::checkIdempotency(Session& s, const IdempotencyRecord& idem)
{
    std::string hash, location, body;
    Poco::Int64 status = 0, created = 0;
    Statement st(s);
    st << "SELECT request_hash, status, location, body, created_at FROM idempotency_keys WHERE key = ?",
        useRef(idem.key), into(hash), into(status), into(location), into(body), into(created);
    if (st.execute() == 0) return std::nullopt;
    if (clock::nowMillis() - created > idem.ttlMillis) {
        // Expired: the key is free again.
        s << "DELETE FROM idempotency_keys WHERE key = ?", useRef(idem.key), now;
        return std::nullopt;
    }
    if (hash != idem.requestHash) {
        throw IdempotencyMismatch("this Idempotency-Key was used with a different request");
    }
    return StoredAnswer{static_cast<int>(status), location, body};
}

void OrderStore::rememberAnswer(Session& s, const IdempotencyRecord& idem)
{
    const Poco::Int64 at = clock::nowMillis();
    const Poco::Int64 status = idem.answer.status;
    s << "INSERT INTO idempotency_keys (key, request_hash, status, location, body, created_at) "
         "VALUES (?, ?, ?, ?, ?, ?)",
        useRef(idem.key), useRef(idem.requestHash), useRef(status), useRef(idem.answer.location), useRef(idem.answer.body), useRef(at),
        now;
}

std::optional<StoredAnswer> OrderStore::createOrder(const Order& order, const std::optional<IdempotencyRecord>& idem)
{
    std::optional<StoredAnswer> replay;
    committer_.write([&](Session& s) {
        if (idem && (replay = checkIdempotency(s, *idem))) return;
        const std::string status(toString(order.status));
        const std::string items = itemsToJson(order.items);
        const std::string metadata = stringMapToJson(order.metadata);
        const Poco::Int64 total = order.totalAmount;
        s << "INSERT INTO orders (id, status, reason, customer, currency, total_amount, items, metadata, created_at, "
             "updated_at) VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)",
            useRef(order.id), useRef(status), useRef(order.customer), useRef(order.currency), useRef(total), useRef(items),
            useRef(metadata), useRef(order.createdAt), useRef(order.updatedAt), now;
        addEvent(s, order.id, "status", {status, "", "", ""}, order.createdAt);
        queueMessage(s, kOrdersQueue, orderMessage(order.id));
        if (idem) rememberAnswer(s, *idem);
    });
    if (!replay) notify(kOrdersQueue);
    return replay;
}

std::optional<StoredAnswer> OrderStore::createPayment(const Payment& payment,
                                                      const std::optional<IdempotencyRecord>& idem)
{
    std::optional<StoredAnswer> replay;
    bool queued = false;
    committer_.write([&](Session& s) {
        if (idem && (replay = checkIdempotency(s, *idem))) return;
        const auto orderStatus = readOrderStatus(s, payment.orderId);
        if (!orderStatus) throw NotFound("order " + payment.orderId + " does not exist");
        if (refusesPayments(*orderStatus)) {
            throw Conflict("order " + payment.orderId + " is " + std::string(toString(*orderStatus)) +
                           " and takes no more payments");
        }
        queued = !holdsPayments(*orderStatus);  // awaiting_payment: queue it now
        const Poco::Int64 amount = payment.amount;
        const Poco::Int64 dispatched = queued ? 1 : 0;
        s << "INSERT INTO payments (id, order_id, status, reason, amount, currency, method, reference, dispatched, "
             "created_at, updated_at) VALUES (?, ?, 'queued', NULL, ?, ?, ?, ?, ?, ?, ?)",
            useRef(payment.id), useRef(payment.orderId), useRef(amount), useRef(payment.currency), useRef(payment.method),
            useRef(payment.reference), useRef(dispatched), useRef(payment.createdAt), useRef(payment.updatedAt), now;
        if (queued) queueMessage(s, kPaymentsQueue, paymentMessage(payment.id));
        if (idem) rememberAnswer(s, *idem);
    });
    if (queued && !replay) notify(kPaymentsQueue);
    return replay;
}

Order OrderStore::cancelOrder(const std::string& id)
{
    committer_.write([&](Session& s) {
        const auto status = readOrderStatus(s, id);
        if (!status) throw NotFound("order " + id + " does not exist");
        if (!canTransition(*status, OrderStatus::Cancelled) ||
            !moveOrder(s, id, *status, OrderStatus::Cancelled, "cancelled by request")) {
            throw Conflict("order " + id + " is " + std::string(toString(*status)) +
                           "; only a queued or awaiting_payment order can be cancelled");
        }
        rejectHeldPayments(s, id);
    });
    auto order = getOrder(id);
    if (!order) throw NotFound("order " + id + " does not exist");
    return *order;
}

std::optional<Order> OrderStore::getOrder(const std::string& id)
{
    return readTransaction(db_, [&](Session& s) -> std::optional<Order> {
        auto orders = loadOrders(s, "WHERE id = ?", {id});
        if (orders.empty()) return std::nullopt;
        Order& order = orders.front();
        order.payments = loadPayments(s, "order_id = ?", id);
        loadEvents(s, order);
        return std::move(order);
    });
}

std::optional<Payment> OrderStore::getPayment(const std::string& id)
{
    return readTransaction(db_, [&](Session& s) -> std::optional<Payment> {
        auto payments = loadPayments(s, "id = ?", id);
        if (payments.empty()) return std::nullopt;
        return payments.front();
    });
}

std::vector<Order> OrderStore::listOrders(std::optional<OrderStatus> status, int limit, const std::string& after)
{
    std::vector<std::string> params;
    if (status) params.emplace_back(toString(*status));
    if (!after.empty()) params.push_back(after);
    const std::string tail = listFilter(status.has_value(), !after.empty(), limit);
    return readTransaction(db_, [&](Session& s) { return loadOrders(s, tail, params); });
}

std::string OrderStore::listFilter(bool byStatus, bool afterId, int limit)
{
    // Served by orders_by_status (status, id) or the primary key (id): the
    // newest-first page is read in index order, never sorted.
    std::string tail = "WHERE 1";
    if (byStatus) tail += " AND status = ?";
    if (afterId) tail += " AND id < ?";
    return tail + " ORDER BY id DESC LIMIT " + std::to_string(limit);
}

OrderStatus OrderStore::startProcessing(const std::string& id)
{
    OrderStatus after = OrderStatus::Queued;
    committer_.write([&](Session& s) {
        const auto status = readOrderStatus(s, id);
        if (!status) throw PoisonMessage("order " + id + " does not exist");
        after = *status;
        if (*status == OrderStatus::Queued && moveOrder(s, id, OrderStatus::Queued, OrderStatus::Processing, "")) {
            after = OrderStatus::Processing;
        }
    });
    return after;
}

bool OrderStore::isStepCompleted(const std::string& id, const std::string& step)
{
    Session s = db_.reader();
    Poco::Int64 n = 0;
    s << "SELECT COUNT(*) FROM order_steps WHERE order_id = ? AND step = ?", useRef(id), useRef(step), into(n), now;
    return n > 0;
}

void OrderStore::recordStepStarted(const std::string& id, const std::string& step)
{
    committer_.write([&](Session& s) { addEvent(s, id, "step_started", {"", "", step, ""}, clock::nowRfc3339()); });
}

bool OrderStore::completeStep(const std::string& id, const std::string& step)
{
    bool done = false;
    committer_.write([&](Session& s) { done = completeStepIn(s, id, step); });
    return done;
}

bool OrderStore::completeStepIn(Session& s, const std::string& id, const std::string& step)
{
    const std::string at = clock::nowRfc3339();
    Statement ledger(s);
    ledger << "INSERT OR IGNORE INTO order_steps (order_id, step, completed_at) VALUES (?, ?, ?)", useRef(id),
        useRef(step), useRef(at);
    if (ledger.execute() == 0) return false;  // done before: a redelivery
    // The step's effect, in the same transaction as its ledger entry.
    if (step == "reserve_stock") {
        auto orders = loadOrders(s, "WHERE id = ?", {id});
        if (orders.empty()) throw PoisonMessage("order " + id + " does not exist");
        Poco::Int64 line = 0;
        for (const auto& item : orders.front().items) {
            const Poco::Int64 quantity = item.quantity;
            s << "INSERT INTO stock_reservations (order_id, line, sku, quantity) VALUES (?, ?, ?, ?)", useRef(id),
                useRef(line), useRef(item.sku), useRef(quantity), now;
            ++line;
        }
    } else if (step == "prepare_invoice") {
        s << "INSERT INTO invoices (order_id, amount, currency, issued_at) "
             "SELECT id, total_amount, currency, ? FROM orders WHERE id = ?",
            useRef(at), useRef(id), now;
    }
    addEvent(s, id, "step_completed", {"", "", step, ""}, at);
    return true;
}

bool OrderStore::finishProcessing(const std::string& id)
{
    bool moved = false;
    bool releasedPayments = false;
    committer_.write([&](Session& s) { moved = finishIn(s, id, releasedPayments); });
    if (releasedPayments) notify(kPaymentsQueue);
    return moved;
}

bool OrderStore::finishIn(Session& s, const std::string& id, bool& releasedPayments)
{
    releasedPayments = false;
    if (!moveOrder(s, id, OrderStatus::Processing, OrderStatus::AwaitingPayment, "")) return false;
    // Payments that arrived while the order was being processed.
    std::vector<std::string> held;
    s << "SELECT id FROM payments WHERE order_id = ? AND status = 'queued' AND dispatched = 0 ORDER BY id",
        useRef(id), into(held), now;
    for (const auto& paymentId : held) {
        s << "UPDATE payments SET dispatched = 1 WHERE id = ?", useRef(paymentId), now;
        queueMessage(s, kPaymentsQueue, paymentMessage(paymentId));
    }
    releasedPayments = !held.empty();
    return true;
}

OrderStore::InstantResult OrderStore::processInstantly(const std::string& id, const std::vector<std::string>& steps)
{
    InstantResult result;
    bool releasedPayments = false;
    committer_.write([&](Session& s) {
        result = InstantResult{};
        const auto status = readOrderStatus(s, id);
        if (!status) throw PoisonMessage("order " + id + " does not exist");
        result.before = *status;
        if (*status == OrderStatus::Queued) {
            moveOrder(s, id, OrderStatus::Queued, OrderStatus::Processing, "");
        } else if (*status != OrderStatus::Processing) {
            return;  // cancelled, or finished before: a redelivery
        }
        for (const auto& step : steps) {
            Poco::Int64 done = 0;
            s << "SELECT COUNT(*) FROM order_steps WHERE order_id = ? AND step = ?", useRef(id), useRef(step),
                into(done), now;
            if (done) continue;
            addEvent(s, id, "step_started", {"", "", step, ""}, clock::nowRfc3339());
            completeStepIn(s, id, step);
            result.stepsRun.push_back(step);
        }
        result.finished = finishIn(s, id, releasedPayments);
    });
    if (releasedPayments) notify(kPaymentsQueue);
    return result;
}

bool OrderStore::failOrder(const std::string& id, const std::string& reason)
{
    bool moved = false;
    committer_.write([&](Session& s) {
        const auto status = readOrderStatus(s, id);
        if (!status || isFinal(*status)) return;
        moved = moveOrder(s, id, *status, OrderStatus::Failed, reason);
        if (moved) rejectHeldPayments(s, id);
    });
    return moved;
}

bool OrderStore::startPayment(const std::string& id)
{
    bool started = false;
    committer_.write([&](Session& s) {
        std::string status;
        Statement st(s);
        st << "SELECT status FROM payments WHERE id = ?", useRef(id), into(status);
        if (st.execute() == 0) throw PoisonMessage("payment " + id + " does not exist");
        if (status == "queued") {
            const std::string at = clock::nowRfc3339();
            s << "UPDATE payments SET status = 'processing', updated_at = ? WHERE id = ?", useRef(at), useRef(id), now;
        }
        started = status == "queued" || status == "processing";
    });
    return started;
}

PaymentOutcome OrderStore::settlePayment(const std::string& id)
{
    PaymentOutcome outcome;
    committer_.write([&](Session& s) {
        outcome = PaymentOutcome{};
        auto payments = loadPayments(s, "id = ?", id);
        if (payments.empty()) throw PoisonMessage("payment " + id + " does not exist");
        const Payment& payment = payments.front();
        outcome.orderId = payment.orderId;
        if (isFinal(payment.status)) {
            outcome.status = payment.status;
            outcome.reason = payment.reason;
            outcome.alreadyFinal = true;
            return;
        }
        auto orders = loadOrders(s, "WHERE id = ?", {payment.orderId});
        if (orders.empty()) throw PoisonMessage("order " + payment.orderId + " does not exist");
        Poco::Int64 sameReference = 0;
        s << "SELECT COUNT(*) FROM payments WHERE reference = ? AND status = 'succeeded' AND id <> ?",
            useRef(payment.reference), useRef(id), into(sameReference), now;

        const auto rejection = paymentRejection(orders.front(), payment, sameReference > 0);
        const std::string at = clock::nowRfc3339();
        if (rejection) {
            const std::string reason(*rejection);
            s << "UPDATE payments SET status = 'rejected', reason = ?, updated_at = ? WHERE id = ?", useRef(reason),
                useRef(at), useRef(id), now;
            addEvent(s, payment.orderId, "payment", {"rejected", reason, "", id}, at);
            outcome.status = PaymentStatus::Rejected;
            outcome.reason = reason;
        } else {
            s << "UPDATE payments SET status = 'succeeded', updated_at = ? WHERE id = ?", useRef(at), useRef(id), now;
            addEvent(s, payment.orderId, "payment", {"succeeded", "", "", id}, at);
            if (!moveOrder(s, payment.orderId, OrderStatus::AwaitingPayment, OrderStatus::Paid, "")) {
                throw std::logic_error("order " + payment.orderId + " left awaiting_payment mid-transaction");
            }
            outcome.status = PaymentStatus::Succeeded;
        }
    });
    return outcome;
}

void OrderStore::abandonPayment(const std::string& id)
{
    committer_.write([&](Session& s) {
        auto payments = loadPayments(s, "id = ?", id);
        if (payments.empty() || isFinal(payments.front().status)) return;
        const std::string at = clock::nowRfc3339();
        const std::string reason(kProcessingFailed);
        s << "UPDATE payments SET status = 'rejected', reason = ?, updated_at = ? WHERE id = ?", useRef(reason), useRef(at),
            useRef(id), now;
        addEvent(s, payments.front().orderId, "payment", {"rejected", reason, "", id}, at);
    });
}

std::map<std::string, std::int64_t> OrderStore::countByStatus(const std::string& table)
{
    Session s = db_.reader();
    std::vector<std::string> statuses;
    std::vector<Poco::Int64> counts;
    s << "SELECT status, COUNT(*) FROM " + table + " GROUP BY status", into(statuses), into(counts), now;
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

bool OrderStore::probeWritable()
{
    try {
        committer_.write([](Session& s) {
            const Poco::Int64 at = clock::nowMillis();
            s << "INSERT OR REPLACE INTO health_probe (id, at) VALUES (1, ?)", useRef(at), now;
        });
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

}  // namespace orderpay
