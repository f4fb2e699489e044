#include "store/sql/SqlOutboxStore.h"

#include "domain/Clock.h"
#include "store/JsonText.h"

#include <Poco/Exception.h>

#include <algorithm>
#include <tuple>

namespace orderpay::sql {
namespace {

std::map<std::string, std::string> decodeHeaders(const std::string& text)
{
    if (text.empty()) return {};
    try {
        return stringMapFromJson(text);
    } catch (const Poco::Exception&) {
        return {};  // written by stringMapToJson only; an unreadable one is dropped, not fatal
    }
}

}  // namespace

SqlOutboxStore::SqlOutboxStore(Readers& readers, Committer& committer, std::string instance)
    : readers_(readers), committer_(committer), instance_(std::move(instance))
{
}

std::vector<OutboxMessage> SqlOutboxStore::claim(std::size_t max, std::chrono::milliseconds claimTime)
{
    std::vector<OutboxMessage> claimed;
    committer_.write([&](Statements& w) {
        claimed.clear();
        const std::int64_t at = clock::nowMillis();
        // Due rows only: a step's timer waits here until its time. Each
        // queue and state is a range of the index (queue, state, due_at),
        // read in due order and merged: an OR over them would scan the
        // table, timers and all.
        struct Due {
            std::int64_t dueAt;
            OutboxMessage message;
        };
        std::vector<Due> due;
        for (const char* queue : {kOrdersQueue, kOrderStepsQueue, kPaymentsQueue}) {
            for (const char* state : {"ready", "publishing"}) {
                w("SELECT id, queue, body, COALESCE(exchange, ''), COALESCE(routing_key, ''), COALESCE(headers, ''), "
                  "COALESCE(message_id, id), due_at FROM messages "
                  "WHERE queue = ? AND state = ? AND due_at <= ? ORDER BY due_at, id LIMIT ? /*FOR UPDATE SKIP LOCKED*/")
                    .query(
                        [&](Statement& row) {
                            due.push_back({row.integer(7),
                                           OutboxMessage{row.integer(0), row.text(1), row.text(2), row.text(3),
                                                         row.text(4), decodeHeaders(row.text(5)), row.integer(6)}});
                        },
                        queue, state, at, static_cast<std::int64_t>(max));
            }
        }
        std::sort(due.begin(), due.end(), [](const Due& a, const Due& b) {
            return std::tie(a.dueAt, a.message.id) < std::tie(b.dueAt, b.message.id);
        });
        if (due.size() > max) due.resize(max);
        const std::int64_t until = at + claimTime.count();
        for (auto& d : due) {
            w("UPDATE messages SET state = 'publishing', due_at = ?, holder = ? WHERE id = ?")
                .send(until, instance_, d.message.id);
            claimed.push_back(std::move(d.message));
        }
    });
    return claimed;
}

void SqlOutboxStore::unclaim(const std::vector<std::int64_t>& ids)
{
    committer_.write([&](Statements& w) {
        const std::int64_t at = clock::nowMillis();
        for (auto id : ids) w("UPDATE messages SET state = 'ready', due_at = ? WHERE id = ?").send(at, id);
    });
}

void SqlOutboxStore::remove(const std::vector<std::int64_t>& ids)
{
    committer_.write([&](Statements& w) {
        for (auto id : ids) w("DELETE FROM messages WHERE id = ?").send(id);
    });
}

void SqlOutboxStore::add(const OutboxMessage& m)
{
    const std::string headers = stringMapToJson(m.headers);
    committer_.write([&](Statements& w) {
        const std::int64_t at = clock::nowMillis();
        w("INSERT INTO messages (queue, body, state, attempts, lease, due_at, created_at, exchange, routing_key, "
          "headers, message_id) VALUES (?, ?, 'ready', 0, 0, ?, ?, ?, ?, ?, NULLIF(?, 0))")
            .send(m.queue, m.body, at, at, m.exchange, m.routingKey, headers, m.messageId);
    });
}

void SqlOutboxStore::deadLetter(const OutboxMessage& m, int attempts, const std::string& reason)
{
    committer_.write([&](Statements& w) {
        const std::int64_t at = clock::nowMillis();
        // due_at: when it died (the dead letters are listed by it).
        w("INSERT INTO messages (queue, body, state, attempts, lease, due_at, last_error, created_at, message_id) "
          "VALUES (?, ?, 'dead', ?, 0, ?, ?, ?, NULLIF(?, 0))")
            .send(m.queue, m.body, static_cast<std::int64_t>(attempts), at, reason, at, m.messageId);
    });
}

QueueDepths SqlOutboxStore::pending()
{
    QueueDepths result{{kOrdersQueue, {}}, {kOrderStepsQueue, {}}, {kPaymentsQueue, {}}, {kWebhooksQueue, {}}};
    const std::int64_t at = clock::nowMillis();
    readers_.readOutsideTransaction([&](Statements& q) {
        // 'leased': the webhooks queue's deliveries in flight (it stays in
        // the database whatever the broker).
        q("SELECT queue, CASE WHEN state = 'leased' THEN 2 WHEN due_at > ? AND state = 'ready' THEN 1 ELSE 0 END, "
          "COUNT(*), MIN(created_at) FROM messages WHERE state IN ('ready', 'publishing', 'leased') GROUP BY 1, 2")
            .query(
                [&](Statement& row) {
                    QueueDepth& depth = result[row.text(0)];
                    if (row.integer(1) == 2) {
                        depth.inFlight = row.integer(2);
                        depth.oldestAgeMs = std::max(depth.oldestAgeMs, at - row.integer(3));
                    } else if (row.integer(1) != 0) {
                        depth.delayed = row.integer(2);  // a step's timer, not due yet
                    } else {
                        depth.ready = row.integer(2);
                        depth.oldestAgeMs = std::max(depth.oldestAgeMs, at - row.integer(3));
                    }
                },
                at);
        q("SELECT queue, COUNT(*) FROM messages WHERE state = 'dead' GROUP BY queue").query([&](Statement& row) {
            result[row.text(0)].dead = row.integer(1);
        });
    });
    return result;
}

std::vector<int> SqlOutboxStore::countDeliveries(const std::vector<std::int64_t>& messageIds)
{
    std::vector<int> attempts(messageIds.size(), 1);
    committer_.write([&](Statements& w) {
        auto& upsert =
            w("INSERT INTO deliveries (message_id, attempts, last_at) VALUES (?, 1, ?) "
              "ON CONFLICT (message_id) DO UPDATE SET attempts = deliveries.attempts + 1, last_at = excluded.last_at "
              "RETURNING attempts");
        const std::int64_t at = clock::nowMillis();
        for (std::size_t i = 0; i < messageIds.size(); ++i) {
            attempts[i] = 1;
            if (messageIds[i] <= 0) continue;
            upsert.query([&](const Statement& row) { attempts[i] = static_cast<int>(row.integer(0)); },
                         messageIds[i], at);
        }
    });
    return attempts;
}

void SqlOutboxStore::uncountDelivery(std::int64_t messageId)
{
    if (messageId <= 0) return;
    committer_.write([&](Statements& w) {
        w("UPDATE deliveries SET attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END WHERE message_id = ?").send(messageId);
    });
}

void SqlOutboxStore::forgetDeliveries(std::int64_t messageId)
{
    if (messageId <= 0) return;
    committer_.post([messageId](Statements& w) {
        w("DELETE FROM deliveries WHERE message_id = ?").send(messageId);
    });
}

}  // namespace orderpay::sql
