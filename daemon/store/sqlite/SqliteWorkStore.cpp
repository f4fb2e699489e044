#include "store/sqlite/SqliteWorkStore.h"

#include "domain/Clock.h"
#include "domain/Errors.h"
#include "domain/Queues.h"
#include "store/sqlite/OrderRows.h"

#include <stdexcept>

namespace orderpay::sqlite {
namespace {

/// The unit of work of processInstantly for one order.
Committer::Work instantUnit(const std::string& id, const std::vector<std::string>& steps, InstantResult& result)
{
    return [&id, &steps, &result](sql::Statements& w) {
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

}  // namespace

SqliteWorkStore::SqliteWorkStore(Database& db, Committer& committer, const MessageSignal& published)
    : db_(db), committer_(committer), published_(published)
{
}

OrderStatus SqliteWorkStore::startProcessing(const std::string& id)
{
    OrderStatus after = OrderStatus::Queued;
    committer_.write([&](sql::Statements& w) {
        const auto status = readOrderStatus(w, id);
        if (!status) throw PoisonMessage("order " + id + " does not exist");
        after = *status;
        OrderEvents events(w, id);
        if (*status == OrderStatus::Queued && moveOrder(events, OrderStatus::Queued, OrderStatus::Processing, "")) {
            after = OrderStatus::Processing;
        }
    });
    return after;
}

bool SqliteWorkStore::isStepCompleted(const std::string& id, const std::string& step)
{
    return isCompleted(completedSteps(db_.localReader(), id), step);
}

void SqliteWorkStore::recordStepStarted(const std::string& id, const std::string& step)
{
    committer_.write(
        [&](sql::Statements& w) { OrderEvents(w, id).add("step_started", {"", "", step, ""}, clock::nowRfc3339()); });
}

bool SqliteWorkStore::completeStep(const std::string& id, const std::string& step)
{
    bool done = false;
    committer_.write([&](sql::Statements& w) {
        done = false;
        if (isCompleted(completedSteps(w, id), step)) return;  // done before: a redelivery
        OrderEvents events(w, id);
        completeStepIn(events, step);
        done = true;
    });
    return done;
}

bool SqliteWorkStore::finishProcessing(const std::string& id)
{
    bool moved = false;
    bool releasedPayments = false;
    committer_.write([&](sql::Statements& w) {
        OrderEvents events(w, id);
        moved = finishIn(events, releasedPayments);
    });
    if (releasedPayments) published_(kPaymentsQueue);
    return moved;
}

std::vector<InstantOutcome> SqliteWorkStore::processInstantly(const std::vector<std::string>& ids,
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
    if (anyReleased) published_(kPaymentsQueue);
    return outcomes;
}

bool SqliteWorkStore::failOrder(const std::string& id, const std::string& reason)
{
    bool moved = false;
    committer_.write([&](sql::Statements& w) {
        moved = false;
        const auto status = readOrderStatus(w, id);
        if (!status || isFinal(*status)) return;
        OrderEvents events(w, id);
        moved = moveOrder(events, *status, OrderStatus::Failed, reason);
        if (moved) rejectHeldPayments(events);
    });
    return moved;
}

bool SqliteWorkStore::startPayment(const std::string& id)
{
    bool started = false;
    committer_.write([&](sql::Statements& w) {
        std::string status;
        const int found =
            w("SELECT status FROM payments WHERE id = ?").query([&](sql::Statement& row) { status = row.text(0); }, id);
        if (found == 0) throw PoisonMessage("payment " + id + " does not exist");
        if (status == "queued") {
            w("UPDATE payments SET status = 'processing', updated_at = ? WHERE id = ?").exec(clock::nowRfc3339(), id);
        }
        started = status == "queued" || status == "processing";
    });
    return started;
}

PaymentOutcome SqliteWorkStore::settlePayment(const std::string& id)
{
    PaymentOutcome outcome;
    committer_.write([&](sql::Statements& w) {
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
        const auto order = loadOrder(w, payment.orderId);
        if (!order) throw PoisonMessage("order " + payment.orderId + " does not exist");
        bool sameReference = false;
        w("SELECT 1 FROM payments WHERE reference = ? AND status = 'succeeded' AND id <> ? LIMIT 1")
            .query([&](sql::Statement&) { sameReference = true; }, payment.reference, id);

        const auto rejection = paymentRejection(*order, payment, sameReference);
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

void SqliteWorkStore::abandonPayment(const std::string& id)
{
    committer_.write([&](sql::Statements& w) {
        auto payments = loadPayments(w, PaymentsOf::Id, id);
        if (payments.empty() || isFinal(payments.front().status)) return;
        const std::string at = clock::nowRfc3339();
        const std::string reason(kProcessingFailed);
        w("UPDATE payments SET status = 'rejected', reason = ?, updated_at = ? WHERE id = ?").exec(reason, at, id);
        OrderEvents(w, payments.front().orderId).add("payment", {"rejected", reason, "", id}, at);
    });
}

}  // namespace orderpay::sqlite
