#include "store/sql/SqlWebhookStore.h"

#include "domain/Clock.h"
#include "domain/Queues.h"
#include "store/sql/OrderRows.h"

#include <Poco/String.h>
#include <Poco/StringTokenizer.h>

#include <algorithm>

namespace orderpay::sql {
namespace {

constexpr std::string_view kEndpointColumns =
    "SELECT id, url, events, secret, previous_secret, previous_until, enabled, disabled_reason, created_at "
    "FROM webhook_endpoints ";

std::string joinEvents(const std::vector<std::string>& events)
{
    std::string out;
    for (const auto& e : events) out += (out.empty() ? "" : ",") + e;
    return out;
}

WebhookEndpoint endpointFromRow(const Statement& row)
{
    WebhookEndpoint e;
    e.id = row.text(0);
    e.url = row.text(1);
    Poco::StringTokenizer events(row.text(2), ",", Poco::StringTokenizer::TOK_IGNORE_EMPTY);
    e.events.assign(events.begin(), events.end());
    e.secret = row.text(3);
    if (!row.isNull(4)) e.previousSecret = row.text(4);
    e.previousUntil = row.integer(5);
    e.enabled = row.integer(6) != 0;
    if (!row.isNull(7)) e.disabledReason = row.text(7);
    e.createdAt = row.text(8);
    return e;
}

std::optional<WebhookEndpoint> readEndpoint(Statements& s, const std::string& id)
{
    static const std::string sql = std::string(kEndpointColumns) + "WHERE id = ?";
    std::optional<WebhookEndpoint> found;
    s(sql).query([&](Statement& row) { found = endpointFromRow(row); }, id);
    return found;
}

}  // namespace

SqlWebhookStore::SqlWebhookStore(Readers& readers, Committer& committer, const MessageSignal& published,
                                 WebhookSubscriptions& subscriptions)
    : readers_(readers), committer_(committer), published_(published), subscriptions_(subscriptions)
{
    endpoints();  // the writers know the subscriptions before the first event
}

void SqlWebhookStore::refresh(const std::vector<WebhookEndpoint>& all)
{
    std::vector<WebhookSubscriptions::Subscriber> subscribers;
    for (const auto& e : all)
        if (e.enabled) subscribers.push_back({e.id, e.events});
    subscriptions_.replace(std::move(subscribers));
}

void SqlWebhookStore::addEndpoint(const WebhookEndpoint& e)
{
    committer_.write([&](Statements& w) {
        w("INSERT INTO webhook_endpoints (id, url, events, secret, previous_secret, previous_until, enabled, "
          "disabled_reason, created_at) VALUES (?, ?, ?, ?, NULL, 0, 1, NULL, ?)")
            .exec(e.id, e.url, joinEvents(e.events), e.secret, e.createdAt);
    });
    endpoints();
}

std::vector<WebhookEndpoint> SqlWebhookStore::endpoints()
{
    static const std::string sql = std::string(kEndpointColumns) + "ORDER BY id";
    std::vector<WebhookEndpoint> all;
    readers_.readOutsideTransaction([&](Statements& q) {
        all.clear();
        q(sql).query([&](Statement& row) { all.push_back(endpointFromRow(row)); });
    });
    refresh(all);
    return all;
}

std::optional<WebhookEndpoint> SqlWebhookStore::endpoint(const std::string& id)
{
    return readOnce(readers_, [&](Statements& q) { return readEndpoint(q, id); });
}

bool SqlWebhookStore::removeEndpoint(const std::string& id)
{
    bool removed = false;
    committer_.write([&](Statements& w) { removed = w("DELETE FROM webhook_endpoints WHERE id = ?").exec(id) > 0; });
    endpoints();
    return removed;
}

std::optional<WebhookEndpoint> SqlWebhookStore::rotate(const std::string& id, const std::string& secret,
                                                       std::int64_t previousUntil)
{
    std::optional<WebhookEndpoint> rotated;
    committer_.write([&](Statements& w) {
        rotated.reset();
        if (w("UPDATE webhook_endpoints SET previous_secret = secret, previous_until = ?, secret = ? WHERE id = ?")
                .exec(previousUntil, secret, id) == 0)
            return;
        rotated = readEndpoint(w, id);
    });
    endpoints();
    return rotated;
}

std::vector<WebhookAttempt> SqlWebhookStore::attempts(const std::string& endpointId, int limit, std::int64_t after)
{
    static const std::string columns =
        "SELECT id, endpoint_id, event_id, event_type, attempt, at, status_code, error, duration_ms FROM webhook_attempts ";
    static const std::string newest = columns + "WHERE endpoint_id = ? ORDER BY id DESC LIMIT ?";
    static const std::string before = columns + "WHERE endpoint_id = ? AND id < ? ORDER BY id DESC LIMIT ?";
    std::vector<WebhookAttempt> found;
    readers_.readOutsideTransaction([&](Statements& q) {
        found.clear();
        auto add = [&](Statement& row) {
            WebhookAttempt a;
            a.id = row.integer(0);
            a.endpointId = row.text(1);
            a.eventId = row.text(2);
            a.eventType = row.text(3);
            a.attempt = static_cast<int>(row.integer(4));
            a.at = row.text(5);
            if (!row.isNull(6)) a.statusCode = static_cast<int>(row.integer(6));
            if (!row.isNull(7)) a.error = row.text(7);
            a.durationMs = row.integer(8);
            found.push_back(std::move(a));
        };
        if (after > 0) q(before).query(add, endpointId, after, static_cast<std::int64_t>(limit));
        else q(newest).query(add, endpointId, static_cast<std::int64_t>(limit));
    });
    return found;
}

void SqlWebhookStore::queueTest(const std::string& endpointId, const std::string& eventId)
{
    const std::string at = clock::nowRfc3339();
    committer_.write([&](Statements& w) {
        queueMessage(w, kWebhooksQueue,
                     R"({"endpoint_id":")" + endpointId + R"(","event_id":")" + eventId +
                         R"(","type":"webhook.test","created_at":")" + at + R"("})");
    });
    published_(kWebhooksQueue);
}

std::vector<StoredMessage> SqlWebhookStore::announced(std::int64_t afterId, std::size_t max)
{
    std::vector<StoredMessage> found;
    if (!subscriptions_.outboxTable()) return found;
    readers_.readOutsideTransaction([&](Statements& q) {
        found.clear();
        q("SELECT id, body, created_at FROM webhook_outbox WHERE id > ? ORDER BY id LIMIT ?")
            .query(
                [&](Statement& row) {
                    found.push_back(StoredMessage{-row.integer(0), kWebhooksQueue, row.text(1), 1, 0, row.integer(2)});
                },
                afterId, static_cast<std::int64_t>(max));
    });
    return found;
}

std::optional<OrderEventSnapshot> SqlWebhookStore::orderEvent(const std::string& orderId, std::int64_t seq,
                                                              const std::string& paymentId)
{
    return readTransaction(readers_, [&](Statements& q) -> std::optional<OrderEventSnapshot> {
        std::optional<OrderEventSnapshot> snapshot;
        std::string status, reason;
        bool hasReason = false;
        std::string at;
        if (q("SELECT at, status, reason FROM order_events WHERE order_id = ? AND seq = ?")
                .query(
                    [&](Statement& row) {
                        at = row.text(0);
                        status = row.isNull(1) ? "" : row.text(1);
                        hasReason = !row.isNull(2);
                        if (hasReason) reason = row.text(2);
                    },
                    orderId, seq) == 0)
            return snapshot;
        auto order = loadOrder(q, orderId);
        if (!order) return snapshot;
        snapshot.emplace();
        snapshot->at = at;
        snapshot->order = std::move(*order);
        if (paymentId.empty()) {
            // The order as the event left it: only status, reason and
            // updated_at ever change.
            snapshot->order.status = parseOrderStatus(status).value_or(snapshot->order.status);
            snapshot->order.reason = hasReason ? std::optional<std::string>(reason) : std::nullopt;
            snapshot->order.updatedAt = at;
        } else {
            auto payments = loadPayments(q, PaymentsOf::Id, paymentId);
            if (payments.empty()) return std::optional<OrderEventSnapshot>();
            Payment p = std::move(payments.front());
            p.status = parsePaymentStatus(status).value_or(p.status);
            p.reason = hasReason ? std::optional<std::string>(reason) : std::nullopt;
            p.updatedAt = at;
            snapshot->payment = std::move(p);
        }
        return snapshot;
    });
}

void SqlWebhookStore::settle(const std::vector<std::pair<StoredMessage, WebhookAttempt>>& attempts,
                             const std::vector<WebhookSettlement>& settlements, std::function<void()> done)
{
    const std::int64_t now = clock::nowMillis();
    committer_.submit([attempts, settlements, now](Statements& w) {
        for (std::size_t i = 0; i < attempts.size(); ++i) {
            const StoredMessage& m = attempts[i].first;
            const WebhookAttempt& a = attempts[i].second;
            const WebhookSettlement& s = settlements[i];
            // Logged if it was tried (not a drop, a delivery put off, or one
            // given up on untried).
            if (s.kind != WebhookSettlement::Kind::Drop && s.kind != WebhookSettlement::Kind::Postpone &&
                !a.endpointId.empty()) {
                const std::optional<std::int64_t> code =
                    a.statusCode ? std::optional<std::int64_t>(*a.statusCode) : std::nullopt;
                w("INSERT INTO webhook_attempts (endpoint_id, event_id, event_type, attempt, at, at_ms, status_code, "
                  "error, duration_ms) VALUES (?, ?, ?, ?, ?, ?, CAST(? AS BIGINT), ?, ?)")
                    .send(a.endpointId, a.eventId, a.eventType, static_cast<std::int64_t>(a.attempt), a.at, now,
                          code ? std::optional<std::string>(std::to_string(*code)) : std::nullopt, a.error,
                          a.durationMs);
            }
            if (m.id < 0) {
                settleAnnounced(w, m, s, !a.endpointId.empty(), now);
            } else switch (s.kind) {
            case WebhookSettlement::Kind::Delivered:
            case WebhookSettlement::Kind::Drop:
                w("DELETE FROM messages WHERE id = ? AND lease = ?").send(m.id, m.lease);
                break;
            case WebhookSettlement::Kind::Retry:
                w("UPDATE messages SET state = 'ready', due_at = ?, last_error = ?, attempts = ? WHERE id = ? AND lease = ?")
                    .send(now + s.delay.count(), s.reason, static_cast<std::int64_t>(m.attempt), m.id, m.lease);
                break;
            case WebhookSettlement::Kind::Postpone:
                w("UPDATE messages SET state = 'ready', due_at = ?, attempts = ? WHERE id = ? AND lease = ?")
                    .send(now + s.delay.count(), static_cast<std::int64_t>(std::max(0, m.attempt - 1)), m.id, m.lease);
                break;
            case WebhookSettlement::Kind::GiveUp:
                w("UPDATE messages SET state = 'dead', last_error = ?, due_at = ?, attempts = ? WHERE id = ? AND lease = ?")
                    .send(s.reason, now, static_cast<std::int64_t>(a.endpointId.empty() ? std::max(0, m.attempt - 1) : m.attempt),
                          m.id, m.lease);
                break;
            }
            if (s.disableReason) {
                w("UPDATE webhook_endpoints SET enabled = 0, disabled_reason = ? WHERE id = ?")
                    .send(*s.disableReason, a.endpointId);
            }
        }
    }, [done = std::move(done)](std::exception_ptr) { done(); });
}

void SqlWebhookStore::settleAnnounced(Statements& w, const StoredMessage& m, const WebhookSettlement& s, bool tried,
                                      std::int64_t now)
{
    using Kind = WebhookSettlement::Kind;
    // Handed back as it was: it stays first in line.
    if (s.kind == Kind::Postpone && s.delay.count() == 0) return;
    if (w("DELETE FROM webhook_outbox WHERE id = ?").exec(-m.id) == 0) return;
    if (s.kind == Kind::Delivered || s.kind == Kind::Drop) return;
    // What has to wait, or is given up on, becomes a message of the queue:
    // the retries' schedule and the dead letters live there.
    const bool dead = s.kind == Kind::GiveUp;
    const int attempts = tried && s.kind != Kind::Postpone ? m.attempt : std::max(0, m.attempt - 1);
    const std::optional<std::string> error = s.kind == Kind::Postpone ? std::nullopt : std::optional<std::string>(s.reason);
    w("INSERT INTO messages (queue, body, state, attempts, lease, due_at, last_error, created_at) "
      "VALUES (?, ?, ?, ?, 0, ?, ?, ?)")
        .send(kWebhooksQueue, m.body, dead ? "dead" : "ready", static_cast<std::int64_t>(attempts),
              dead ? now : now + s.delay.count(), error, m.createdAt);
}

void SqlWebhookStore::resume(const std::string& endpointId)
{
    // A scan of the queue's waiting messages, once per recovery: the
    // endpoint is in the body (announceWebhooks writes it first).
    committer_.submit(
        [endpointId](Statements& w) {
            const std::int64_t now = clock::nowMillis();
            w("UPDATE messages SET due_at = ? WHERE queue = ? AND state = 'ready' AND due_at > ? AND body LIKE ?")
                .send(now, kWebhooksQueue, now, R"({"endpoint_id":")" + endpointId + R"(",%)");
        },
        [&published = published_](std::exception_ptr) { published(kWebhooksQueue); });
}

void SqlWebhookStore::pruneAttempts(std::int64_t before)
{
    committer_.post([before](Statements& w) { w("DELETE FROM webhook_attempts WHERE at_ms < ?").send(before); });
}

}  // namespace orderpay::sql
