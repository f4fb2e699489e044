#include "store/sql/SqlWorkStore.h"

#include "domain/Clock.h"
#include "domain/Errors.h"
#include "domain/Queues.h"
#include "store/sql/OrderRows.h"

#include <optional>
#include <stdexcept>

namespace orderpay::sql {
namespace {

/// An order's status, when its step in progress is due (nullopt: no step
/// waits, or an order a daemon before durable timers was processing), its
/// items (for reserve_stock) and its events so far: one statement, the
/// order's row locked (see readOrderStatus). On PostgreSQL a statement that
/// waited for the lock sees the newest version of the order's row but the
/// events of its snapshot, from before the wait: an event written meanwhile
/// is missed, and the unit's own events then collide with it (the key of
/// order_events, order_events_step_once), a conflict that runs it again
/// with a fresh view. Anything whose omission nothing would catch (the
/// payments that wait for the order) is read by statements of its own.
struct OrderState {
    OrderStatus status = OrderStatus::Queued;
    std::optional<std::int64_t> stepDueAt;
    std::string items;
    EventsSoFar events;
};

std::optional<OrderState> readOrderState(Statements& w, const std::string& id)
{
    std::optional<OrderState> state;
    w("SELECT o.status, o.step_due_at, o.items, e.seq, e.type, e.step FROM orders o "
      "LEFT JOIN order_events e ON e.order_id = o.id WHERE o.id = ? /*FOR UPDATE OF o*/")
        .query(
            [&](Statement& row) {
                if (!state) {
                    state = OrderState{parseOrderStatus(row.text(0)).value_or(OrderStatus::Queued), std::nullopt,
                                       row.text(2), {}};
                    if (!row.isNull(1)) state->stepDueAt = row.integer(1);
                }
                if (!row.isNull(3)) state->events.add(row.integer(3), row.text(4), row.text(5));
            },
            id);
    return state;
}

/// Orders in processing, the count's row locked until the transaction
/// ends: starts on several writers (PostgreSQL) take places one after the
/// other, each seeing the count the one before committed.
std::int64_t lockedProcessingCount(Statements& w)
{
    std::int64_t n = 0;
    w("SELECT value FROM work_counters WHERE name = 'processing' /*FOR UPDATE*/")
        .query([&](Statement& row) { n = row.integer(0); });
    return n;
}

/// The index of an order's step in progress (steps.size(): all done).
std::size_t stepInProgress(const EventsSoFar& so, const std::vector<std::string>& steps)
{
    std::size_t k = 0;
    while (k < steps.size() && isCompleted(so.completed, steps[k])) ++k;
    return k;
}

/// The unit of work of advance() for one message.
Committer::Work advanceUnit(const OrderWork& work, const ProcessingPlan& plan, AdvanceResult& result)
{
    return [&work, &plan, &result](Statements& w) {
        result = AdvanceResult{};
        const std::string& id = work.orderId;
        const auto state = readOrderState(w, id);
        if (!state) throw PoisonMessage("order " + id + " does not exist");
        const OrderStatus status = state->status;
        result.before = status;
        const std::vector<std::string>& steps = plan.steps;
        const std::int64_t now = clock::nowMillis();
        const EventsSoFar& so = state->events;
        OrderEvents events(w, id, so.nextSeq, true);
        auto begin = [&](std::size_t k) {
            events.add("step_started", {"", "", steps[k], "", plan.instance}, clock::nowRfc3339());
            if (result.completed.empty()) result.begunFirst = true;
            result.begun.push_back(steps[k]);
            return now + plan.times[k].count();
        };

        std::size_t k = 0;
        std::int64_t due = now;
        if (status == OrderStatus::Queued) {
            if (!work.step.empty()) {
                result.stale = true;  // a step's timer for an order never started: not ours to start
                return;
            }
            // An order that will wait for a step stays in processing past
            // this transaction: it needs one of orders.concurrency places.
            if (!plan.instant() && lockedProcessingCount(w) >= plan.concurrency) {
                result.noCapacity = true;
                return;
            }
            moveOrder(events, OrderStatus::Queued, OrderStatus::Processing, "", false);
            result.started = true;
            due = begin(0);
        } else if (status == OrderStatus::Processing) {
            k = stepInProgress(so, steps);
            if (state->stepDueAt) {
                // Only the message of the step in progress carries it on;
                // any other is a redelivery of work already done.
                if (k == steps.size() || work.step != steps[k]) {
                    result.stale = true;
                    return;
                }
                due = *state->stepDueAt;
                if (due <= now) result.lateMs = now - due;
            } else if (k < steps.size()) {
                // Processing under a daemon that slept through steps: go on
                // now, with the step's start recorded if it was not.
                if (!isCompleted(so.started, steps[k])) begin(k);
            }
        } else {
            result.stale = true;  // cancelled, failed, or processed before: a redelivery
            return;
        }

        while (k < steps.size() && due <= now) {
            completeStepIn(events, steps[k], plan.instance, &state->items);
            result.completed.push_back(steps[k]);
            if (++k < steps.size()) due = begin(k);
        }
        if (k == steps.size()) {
            // Started and finished here (no processing time): the count of
            // orders in processing never saw it.
            finishIn(events, result.releasedPayments, false);
            events.flush();
            result.finished = true;
            if (!result.started) countProcessing(w, -1);
            return;
        }
        // The step in progress has time left: its timer, in this
        // transaction (an early delivery of the timer sets it again).
        events.keepStepDue(due);
        events.flush();
        if (result.started) countProcessing(w, 1);
        queueMessageAt(w, kOrderStepsQueue, orderStepMessage(id, steps[k]), due);
        result.dueAt = due;
    };
}

}  // namespace

SqlWorkStore::SqlWorkStore(Readers& readers, Committer& committer, const MessageSignal& published)
    : readers_(readers), committer_(committer), published_(published)
{
}

std::vector<AdvanceOutcome> SqlWorkStore::advance(const std::vector<OrderWork>& work, const ProcessingPlan& plan)
{
    std::vector<AdvanceOutcome> outcomes(work.size());
    std::vector<Committer::Work> units;
    units.reserve(work.size());
    for (std::size_t i = 0; i < work.size(); ++i) units.push_back(advanceUnit(work[i], plan, outcomes[i].result));
    const auto errors = committer_.writeAll(std::move(units));
    bool anyReleased = false;
    for (std::size_t i = 0; i < work.size(); ++i) {
        outcomes[i].error = errors[i];
        anyReleased = anyReleased || (!errors[i] && outcomes[i].result.releasedPayments);
    }
    if (anyReleased) published_(kPaymentsQueue);
    return outcomes;
}

std::int64_t SqlWorkStore::ordersInProcessing()
{
    return readOnce(readers_, [](Statements& q) { return processingCount(q); });
}

bool SqlWorkStore::failOrder(const std::string& id, const std::string& reason)
{
    bool moved = false;
    committer_.write([&](Statements& w) {
        moved = false;
        const auto status = readOrderStatus(w, id);
        if (!status || isFinal(*status)) return;
        OrderEvents events(w, id);
        moveOrder(events, *status, OrderStatus::Failed, reason);
        rejectHeldPayments(events);
        moved = true;
    });
    return moved;
}

bool SqlWorkStore::startPayment(const std::string& id)
{
    bool started = false;
    committer_.write([&](Statements& w) {
        std::string status;
        const int found = w("SELECT status FROM payments WHERE id = ? /*FOR UPDATE*/")
                              .query([&](Statement& row) { status = row.text(0); }, id);
        if (found == 0) throw PoisonMessage("payment " + id + " does not exist");
        if (status == "queued") {
            w("UPDATE payments SET status = 'processing', updated_at = ? WHERE id = ?").send(clock::nowRfc3339(), id);
            w.tally.move("payments", "queued", "processing");
        }
        started = status == "queued" || status == "processing";
    });
    return started;
}

PaymentOutcome SqlWorkStore::settlePayment(const std::string& id)
{
    PaymentOutcome outcome;
    committer_.write([&](Statements& w) {
        outcome = PaymentOutcome{};
        // The order's row first: a payment and a cancel of its order, or two
        // payments of one order, settle one after the other.
        if (!lockOrderOfPayment(w, id)) throw PoisonMessage("payment " + id + " does not exist");
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
        const auto order = loadOrder(w, payment.orderId);
        if (!order) throw PoisonMessage("order " + payment.orderId + " does not exist");
        bool sameReference = false;
        w("SELECT 1 FROM payments WHERE reference = ? AND status = 'succeeded' AND id <> ? LIMIT 1")
            .query([&](Statement&) { sameReference = true; }, payment.reference, id);

        const auto rejection = paymentRejection(*order, payment, sameReference);
        const std::string at = clock::nowRfc3339();
        OrderEvents events(w, payment.orderId);
        if (rejection) {
            const std::string reason(*rejection);
            w("UPDATE payments SET status = 'rejected', reason = ?, updated_at = ? WHERE id = ?").send(reason, at, id);
            w.tally.move("payments", toString(payment.status), "rejected");
            events.add("payment", {"rejected", reason, "", id, ""}, at);
            outcome.status = PaymentStatus::Rejected;
            outcome.reason = reason;
        } else {
            w("UPDATE payments SET status = 'succeeded', updated_at = ? WHERE id = ?").send(at, id);
            w.tally.move("payments", toString(payment.status), "succeeded");
            events.add("payment", {"succeeded", "", "", id, ""}, at);
            // paymentRejection passes only a payment for an order awaiting it.
            moveOrder(events, OrderStatus::AwaitingPayment, OrderStatus::Paid, "");
            outcome.status = PaymentStatus::Succeeded;
        }
    });
    return outcome;
}

void SqlWorkStore::abandonPayment(const std::string& id)
{
    committer_.write([&](Statements& w) {
        if (!lockOrderOfPayment(w, id)) return;
        auto payments = loadPayments(w, PaymentsOf::Id, id);
        if (payments.empty() || isFinal(payments.front().status)) return;
        const std::string at = clock::nowRfc3339();
        const std::string reason(kProcessingFailed);
        w("UPDATE payments SET status = 'rejected', reason = ?, updated_at = ? WHERE id = ?").send(reason, at, id);
        w.tally.move("payments", toString(payments.front().status), "rejected");
        OrderEvents(w, payments.front().orderId).add("payment", {"rejected", reason, "", id, ""}, at);
    });
}

}  // namespace orderpay::sql
