#include "store/sqlite/SqliteOutboxStore.h"

#include "domain/Clock.h"
#include "store/JsonText.h"

#include <Poco/Exception.h>

namespace orderpay::sqlite {
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

SqliteOutboxStore::SqliteOutboxStore(Database& db, Committer& committer) : db_(db), committer_(committer) {}

std::vector<OutboxMessage> SqliteOutboxStore::claim(std::size_t max, std::chrono::milliseconds claimTime)
{
    std::vector<OutboxMessage> claimed;
    committer_.write([&](sql::Statements& w) {
        claimed.clear();
        const std::int64_t at = clock::nowMillis();
        w("SELECT id, queue, body, COALESCE(exchange, ''), COALESCE(routing_key, ''), COALESCE(headers, ''), "
          "COALESCE(message_id, id) FROM messages "
          "WHERE state = 'ready' OR (state = 'publishing' AND due_at <= ?) ORDER BY id LIMIT ?")
            .query(
                [&](sql::Statement& row) {
                    claimed.push_back(OutboxMessage{row.integer(0), row.text(1), row.text(2), row.text(3), row.text(4),
                                                    decodeHeaders(row.text(5)), row.integer(6)});
                },
                at, static_cast<std::int64_t>(max));
        const std::int64_t until = at + claimTime.count();
        for (const auto& m : claimed) w("UPDATE messages SET state = 'publishing', due_at = ? WHERE id = ?").exec(until, m.id);
    });
    return claimed;
}

void SqliteOutboxStore::unclaim(const std::vector<std::int64_t>& ids)
{
    committer_.write([&](sql::Statements& w) {
        for (auto id : ids) w("UPDATE messages SET state = 'ready' WHERE id = ?").exec(id);
    });
}

void SqliteOutboxStore::remove(const std::vector<std::int64_t>& ids)
{
    committer_.write([&](sql::Statements& w) {
        for (auto id : ids) w("DELETE FROM messages WHERE id = ?").exec(id);
    });
}

void SqliteOutboxStore::add(const OutboxMessage& m)
{
    const std::string headers = stringMapToJson(m.headers);
    committer_.write([&](sql::Statements& w) {
        const std::int64_t at = clock::nowMillis();
        w("INSERT INTO messages (queue, body, state, attempts, lease, due_at, created_at, exchange, routing_key, "
          "headers, message_id) VALUES (?, ?, 'ready', 0, 0, ?, ?, ?, ?, ?, NULLIF(?, 0))")
            .exec(m.queue, m.body, at, at, m.exchange, m.routingKey, headers, m.messageId);
    });
}

QueueDepths SqliteOutboxStore::pending()
{
    QueueDepths result{{kOrdersQueue, {}}, {kPaymentsQueue, {}}};
    const std::int64_t at = clock::nowMillis();
    db_.localReader()(
        "SELECT queue, COUNT(*), MIN(created_at) FROM messages WHERE state IN ('ready', 'publishing') GROUP BY queue")
        .query([&](sql::Statement& row) {
            QueueDepth& q = result[row.text(0)];
            q.ready = row.integer(1);
            q.oldestAgeMs = at - row.integer(2);
        });
    return result;
}

std::vector<int> SqliteOutboxStore::countDeliveries(const std::vector<std::int64_t>& messageIds)
{
    std::vector<int> attempts(messageIds.size(), 1);
    committer_.write([&](sql::Statements& w) {
        auto& upsert =
            w("INSERT INTO deliveries (message_id, attempts, last_at) VALUES (?, 1, ?) "
              "ON CONFLICT (message_id) DO UPDATE SET attempts = attempts + 1, last_at = excluded.last_at "
              "RETURNING attempts");
        const std::int64_t at = clock::nowMillis();
        for (std::size_t i = 0; i < messageIds.size(); ++i) {
            attempts[i] = 1;
            if (messageIds[i] <= 0) continue;
            upsert.query([&](const sql::Statement& row) { attempts[i] = static_cast<int>(row.integer(0)); },
                         messageIds[i], at);
        }
    });
    return attempts;
}

void SqliteOutboxStore::uncountDelivery(std::int64_t messageId)
{
    if (messageId <= 0) return;
    committer_.write([&](sql::Statements& w) {
        w("UPDATE deliveries SET attempts = MAX(attempts - 1, 0) WHERE message_id = ?").exec(messageId);
    });
}

void SqliteOutboxStore::forgetDeliveries(std::int64_t messageId)
{
    if (messageId <= 0) return;
    committer_.post([messageId](sql::Statements& w) {
        w("DELETE FROM deliveries WHERE message_id = ?").exec(messageId);
    });
}

}  // namespace orderpay::sqlite
