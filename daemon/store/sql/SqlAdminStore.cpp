#include "store/sql/SqlAdminStore.h"

#include "domain/Clock.h"
#include "domain/Errors.h"
#include "domain/Ids.h"
#include "domain/Order.h"
#include "domain/Queues.h"
#include "store/sql/OrderRows.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <memory>
#include <set>

namespace orderpay::sql {
namespace {

constexpr std::string_view kDeadColumns = "SELECT id, queue, body, attempts, last_error, due_at FROM messages ";

/// The order or payment a message names (its body as OrderRows writes it);
/// nothing for a body that cannot be read.
void readSubject(const std::string& body, DeadLetter& d)
{
    try {
        Poco::JSON::Parser parser;
        const auto object = parser.parse(body).extract<Poco::JSON::Object::Ptr>();
        if (object->has("order_id")) {
            const std::string id = object->getValue<std::string>("order_id");
            if (ids::isValid(id, "ord_")) d.orderId = id;
        }
        if (object->has("payment_id")) {
            const std::string id = object->getValue<std::string>("payment_id");
            if (ids::isValid(id, "pay_")) d.paymentId = id;
        }
    } catch (const Poco::Exception&) {
        // A message that names nothing: listed, and a replay is refused.
    }
}

DeadLetter deadFromRow(const Statement& row)
{
    DeadLetter d;
    d.id = row.integer(0);
    d.queue = row.text(1);
    readSubject(row.text(2), d);
    d.attempts = row.integer(3);
    if (!row.isNull(4)) d.reason = row.text(4);
    d.deadAt = row.integer(5);
    return d;
}

/// Replays one dead letter, in the caller's transaction (see
/// AdminStore::replay); throws NotFound or Conflict having changed nothing.
void replayIn(Statements& w, const DeadLetter& d, std::set<std::string>& queued)
{
    const std::string at = clock::nowRfc3339();
    if (d.queue == kWebhooksQueue) {
        // A delivery given up on: tried again from now, with a fresh
        // attempt count and a fresh webhooks.max_age.
        const std::int64_t now = clock::nowMillis();
        w("UPDATE messages SET state = 'ready', attempts = 0, due_at = ?, created_at = ?, last_error = NULL "
          "WHERE id = ? AND state = 'dead'")
            .send(now, now, d.id);
        queued.insert(kWebhooksQueue);
        return;
    }
    if (!d.orderId.empty()) {
        const auto status = readOrderStatus(w, d.orderId);
        if (!status) throw Conflict("order " + d.orderId + " no longer exists");
        if (*status == OrderStatus::Paid || *status == OrderStatus::Cancelled) {
            throw Conflict("order " + d.orderId + " is " + std::string(toString(*status)) +
                           " since; there is nothing to process again");
        }
        if (*status == OrderStatus::Failed) {
            OrderEvents events(w, d.orderId);
            moveOrder(events, OrderStatus::Failed, OrderStatus::Queued, "replayed");
        }
        // Processing starts again from the order's first step not
        // completed (the events are its ledger), whichever queue the
        // message died on: a step's timer is set again by the start.
        queueMessage(w, kOrdersQueue, orderMessage(d.orderId));
        queued.insert(kOrdersQueue);
    } else if (!d.paymentId.empty()) {
        if (!lockOrderOfPayment(w, d.paymentId)) throw Conflict("payment " + d.paymentId + " no longer exists");
        auto payments = loadPayments(w, PaymentsOf::Id, d.paymentId);
        const Payment& p = payments.front();
        if (p.status == PaymentStatus::Succeeded) throw Conflict("payment " + p.id + " succeeded since");
        const auto order = readOrderStatus(w, p.orderId);
        if (*order == OrderStatus::Paid || *order == OrderStatus::Cancelled || *order == OrderStatus::Failed) {
            throw Conflict("order " + p.orderId + " is " + std::string(toString(*order)) +
                           "; it takes no payment now");
        }
        // Settled at once if its order awaits payment, else held until the
        // order gets there (as a payment that arrives early is).
        const bool dispatch = *order == OrderStatus::AwaitingPayment;
        w("UPDATE payments SET status = 'queued', reason = NULL, updated_at = ?, dispatched = ? WHERE id = ?")
            .send(at, dispatch ? 1 : 0, p.id);
        w.tally.move("payments", toString(p.status), "queued");
        OrderEvents(w, p.orderId).add("payment", {"queued", "replayed", "", p.id, ""}, at);
        if (dispatch) {
            queueMessage(w, kPaymentsQueue, paymentMessage(p.id));
            queued.insert(kPaymentsQueue);
        }
    } else {
        throw Conflict("dead letter dl_" + std::to_string(d.id) +
                       " names no order or payment (its message could not be read); a replay would fail again");
    }
    w("DELETE FROM messages WHERE id = ? AND state = 'dead'").send(d.id);
}

}  // namespace

SqlAdminStore::SqlAdminStore(Readers& readers, Committer& committer, const MessageSignal& published)
    : readers_(readers), committer_(committer), published_(published)
{
}

std::map<std::string, std::map<std::string, std::int64_t>> SqlAdminStore::statusCounts()
{
    std::map<std::string, std::map<std::string, std::int64_t>> counts;
    readers_.readOutsideTransaction([&](Statements& q) {
        q("SELECT kind, status, SUM(n) FROM status_counts GROUP BY kind, status").query([&](Statement& row) {
            counts[row.text(0)][row.text(1)] = row.integer(2);
        });
    });
    return counts;
}

std::vector<DeadLetter> SqlAdminStore::deadLetters(const std::string& queue, int limit, std::int64_t after)
{
    // Served by the queue's index (queue, state, due_at, id), read backwards.
    static const std::string all = std::string(kDeadColumns) + "WHERE state = 'dead' ORDER BY due_at DESC, id DESC LIMIT ?";
    static const std::string ofQueue =
        std::string(kDeadColumns) + "WHERE queue = ? AND state = 'dead' ORDER BY due_at DESC, id DESC LIMIT ?";
    // After a given one: those that died before it, or at the same
    // millisecond with a lower id.
    static const std::string allAfter =
        std::string(kDeadColumns) +
        "WHERE state = 'dead' AND (due_at < ? OR (due_at = ? AND id < ?)) ORDER BY due_at DESC, id DESC LIMIT ?";
    static const std::string ofQueueAfter =
        std::string(kDeadColumns) +
        "WHERE queue = ? AND state = 'dead' AND (due_at < ? OR (due_at = ? AND id < ?)) "
        "ORDER BY due_at DESC, id DESC LIMIT ?";
    std::vector<DeadLetter> result;
    const std::int64_t n = limit;
    readers_.read([&](Statements& q) {
        result.clear();
        auto add = [&](Statement& row) { result.push_back(deadFromRow(row)); };
        if (after <= 0) {
            if (queue.empty()) q(all).query(add, n);
            else q(ofQueue).query(add, queue, n);
            return;
        }
        std::optional<std::int64_t> diedAt;
        q("SELECT due_at FROM messages WHERE id = ? AND state = 'dead'").query(
            [&](Statement& row) { diedAt = row.integer(0); }, after);
        // A cursor replayed meanwhile: from its id alone (ids grow with time).
        const std::int64_t at = diedAt.value_or(0);
        if (!diedAt) {
            static const std::string byId = std::string(kDeadColumns) +
                                            "WHERE state = 'dead' AND id < ? ORDER BY due_at DESC, id DESC LIMIT ?";
            static const std::string ofQueueById =
                std::string(kDeadColumns) + "WHERE queue = ? AND state = 'dead' AND id < ? ORDER BY due_at DESC, id DESC LIMIT ?";
            if (queue.empty()) q(byId).query(add, after, n);
            else q(ofQueueById).query(add, queue, after, n);
            return;
        }
        if (queue.empty()) q(allAfter).query(add, at, at, after, n);
        else q(ofQueueAfter).query(add, queue, at, at, after, n);
    });
    return result;
}

std::optional<DeadLetter> SqlAdminStore::deadLetter(std::int64_t id)
{
    static const std::string sql = std::string(kDeadColumns) + "WHERE id = ? AND state = 'dead'";
    std::optional<DeadLetter> found;
    readers_.readOutsideTransaction([&](Statements& q) {
        q(sql).query([&](Statement& row) { found = deadFromRow(row); }, id);
    });
    return found;
}

void SqlAdminStore::replay(std::int64_t id, Done then)
{
    auto queued = std::make_shared<std::set<std::string>>();
    committer_.submit(
        [id, queued](Statements& w) {
            queued->clear();
            static const std::string sql = std::string(kDeadColumns) + "WHERE id = ? AND state = 'dead' /*FOR UPDATE*/";
            std::optional<DeadLetter> d;
            w(sql).query([&](Statement& row) { d = deadFromRow(row); }, id);
            if (!d) throw NotFound("dead letter dl_" + std::to_string(id) + " does not exist (or was replayed)");
            replayIn(w, *d, *queued);
        },
        [this, queued, then = std::move(then)](std::exception_ptr error) {
            if (!error)
                for (const auto& q : *queued) published_(q);
            then(error);
        });
}

void SqlAdminStore::replayAll(const DeadLetterFilter& filter, bool dryRun,
                              std::function<void(Replayed, std::exception_ptr)> then)
{
    // Dead letters are few (each is an operator's to look at): the filter
    // on the reason runs here, the same for both databases.
    auto matches = [filter](Statements& s, bool lock) {
        static const std::string all = std::string(kDeadColumns) + "WHERE state = 'dead' ORDER BY id";
        static const std::string allLocked = all + " /*FOR UPDATE*/";
        static const std::string ofQueue = std::string(kDeadColumns) + "WHERE queue = ? AND state = 'dead' ORDER BY id";
        static const std::string ofQueueLocked = ofQueue + " /*FOR UPDATE*/";
        std::vector<DeadLetter> found;
        auto add = [&](Statement& row) {
            DeadLetter d = deadFromRow(row);
            if (d.reason.find(filter.reasonContains) != std::string::npos) found.push_back(std::move(d));
        };
        if (filter.queue.empty()) s(lock ? allLocked : all).query(add);
        else s(lock ? ofQueueLocked : ofQueue).query(add, filter.queue);
        return found;
    };
    if (dryRun) {
        Replayed counted;
        try {
            counted.matched = static_cast<std::int64_t>(readTransaction(readers_, [&](Statements& q) { return matches(q, false); }).size());
        } catch (...) {
            return then(counted, std::current_exception());
        }
        return then(counted, nullptr);
    }
    struct Run {
        Replayed counts;
        std::set<std::string> queued;
    };
    auto run = std::make_shared<Run>();
    committer_.submit(
        [run, matches](Statements& w) {
            *run = Run{};
            const auto found = matches(w, true);
            run->counts.matched = static_cast<std::int64_t>(found.size());
            for (const auto& d : found) {
                // A conflict is found by reads before any write of its
                // own: skipping it leaves nothing half done.
                try {
                    replayIn(w, d, run->queued);
                    ++run->counts.replayed;
                } catch (const Conflict&) {
                }
            }
        },
        [this, run, then = std::move(then)](std::exception_ptr error) {
            if (!error)
                for (const auto& q : run->queued) published_(q);
            then(run->counts, error);
        });
}

}  // namespace orderpay::sql
