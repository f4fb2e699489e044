#include "store/sql/SqlQueueStore.h"

#include "domain/Clock.h"

#include <algorithm>
#include <string_view>
#include <tuple>

namespace orderpay::sql {

SqlQueueStore::SqlQueueStore(Readers& readers, Committer& committer, bool soleUser, std::string instance)
    : readers_(readers), committer_(committer), soleUser_(soleUser), instance_(std::move(instance))
{
}

void SqlQueueStore::releaseAllLeases()
{
    if (!soleUser_) return;  // another instance's leases are not ours to end: they run out
    committer_.write([](Statements& w) {
        w("UPDATE messages SET state = 'ready', due_at = ? WHERE state = 'leased'").send(clock::nowMillis());
    });
}

bool SqlQueueStore::anythingDue(const std::string& queue)
{
    // Each state its own range of the index: "state IN (...)" would build
    // a temporary b-tree of the list at every run.
    const std::int64_t at = clock::nowMillis();
    return readOnce(readers_, [&](Statements& q) {
        bool due = false;
        q("SELECT 1 FROM messages WHERE queue = ? AND state = 'ready' AND due_at <= ? "
          "UNION ALL SELECT 1 FROM messages WHERE queue = ? AND state = 'leased' AND due_at <= ? LIMIT 1")
            .query([&](Statement&) { due = true; }, queue, at, queue, at);
        return due;
    });
}

std::vector<StoredMessage> SqlQueueStore::lease(const std::string& queue, std::size_t max,
                                                   std::chrono::milliseconds leaseTime)
{
    std::vector<StoredMessage> leased;
    committer_.write([&](Statements& w) {
        leased.clear();
        const std::int64_t at = clock::nowMillis();
        // Ready messages and expired leases, oldest due first. Read as two
        // ranges of the index, each already in (due_at, id) order, and
        // merged here: one query over "state IN (...) ORDER BY" builds two
        // temporary b-trees per lease.
        struct Due {
            std::int64_t dueAt;
            StoredMessage message;
        };
        std::vector<Due> due;
        for (std::string_view state : {"ready", "leased"}) {
            w("SELECT id, body, attempts, lease, due_at, created_at FROM messages "
              "WHERE queue = ? AND state = ? AND due_at <= ? ORDER BY due_at, id LIMIT ? /*FOR UPDATE SKIP LOCKED*/")
                .query(
                    [&](Statement& row) {
                        due.push_back({row.integer(4), StoredMessage{row.integer(0), queue, row.text(1),
                                                                     static_cast<int>(row.integer(2) + 1),
                                                                     row.integer(3) + 1, row.integer(5)}});
                    },
                    queue, state, at, static_cast<std::int64_t>(max));
        }
        std::sort(due.begin(), due.end(), [](const Due& a, const Due& b) {
            return std::tie(a.dueAt, a.message.id) < std::tie(b.dueAt, b.message.id);
        });
        if (due.size() > max) due.resize(max);
        if (due.empty()) return;
        // One statement for the batch (a statement per size: a batch is at
        // most WorkSettings::kBatchSize).
        std::string sql = "UPDATE messages SET state = 'leased', attempts = attempts + 1, lease = lease + 1, "
                          "due_at = ?, holder = ? WHERE id IN (?";
        std::vector<std::optional<std::string>> values{std::to_string(at + leaseTime.count()), instance_};
        for (auto& d : due) {
            if (values.size() > 2) sql += ", ?";
            values.push_back(std::to_string(d.message.id));
            leased.push_back(std::move(d.message));
        }
        w(sql + ")").sendTexts(values);
    });
    return leased;
}

std::vector<StoredMessage> SqlQueueStore::due(const std::string& queue, std::size_t max)
{
    std::vector<StoredMessage> found;
    const std::int64_t at = clock::nowMillis();
    readers_.readOutsideTransaction([&](Statements& q) {
        found.clear();
        q("SELECT id, body, attempts, lease, created_at FROM messages "
          "WHERE queue = ? AND state = 'ready' AND due_at <= ? ORDER BY due_at, id LIMIT ?")
            .query(
                [&](Statement& row) {
                    found.push_back(StoredMessage{row.integer(0), queue, row.text(1), static_cast<int>(row.integer(2) + 1),
                                                  row.integer(3), row.integer(4)});
                },
                queue, at, static_cast<std::int64_t>(max));
    });
    return found;
}

void SqlQueueStore::ack(const StoredMessage& m, bool wait)
{
    auto remove = [id = m.id, lease = m.lease](Statements& w) {
        w("DELETE FROM messages WHERE id = ? AND lease = ?").send(id, lease);
    };
    if (wait) committer_.write(remove);
    else committer_.post(remove);
}

void SqlQueueStore::retry(const StoredMessage& m, std::chrono::milliseconds delay, const std::string& reason)
{
    committer_.write([&](Statements& w) {
        w("UPDATE messages SET state = 'ready', due_at = ?, last_error = ? WHERE id = ? AND lease = ?")
            .send(clock::nowMillis() + delay.count(), reason, m.id, m.lease);
    });
}

void SqlQueueStore::deadLetter(const StoredMessage& m, const std::string& reason)
{
    committer_.write([&](Statements& w) {
        // due_at: when it died (the dead letters are listed by it).
        w("UPDATE messages SET state = 'dead', last_error = ?, due_at = ? WHERE id = ? AND lease = ?")
            .send(reason, clock::nowMillis(), m.id, m.lease);
    });
}

void SqlQueueStore::release(const StoredMessage& m)
{
    committer_.write([&](Statements& w) {
        // Due at once, and back in its place: a new order's message was due
        // when written, and the others come before any written after them.
        const std::int64_t now = clock::nowMillis();
        w("UPDATE messages SET state = 'ready', due_at = CASE WHEN created_at < ? THEN created_at ELSE ? END, "
          "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END WHERE id = ? AND lease = ?")
            .send(now, now, m.id, m.lease);
    });
}

QueueDepths SqlQueueStore::depths()
{
    QueueDepths result{{kOrdersQueue, {}}, {kOrderStepsQueue, {}}, {kPaymentsQueue, {}}, {kWebhooksQueue, {}}};
    const std::int64_t at = clock::nowMillis();
    // Counted on the index alone (queue, state, due_at: covering); the
    // oldest of a group is its lowest id, whose row is then read for its age.
    readers_.readOutsideTransaction([&](Statements& q) {
        std::vector<std::pair<std::string, std::int64_t>> oldest;
        q("SELECT queue, state, COUNT(*), MIN(id) FROM messages GROUP BY queue, state").query([&](Statement& row) {
            QueueDepth& depth = result[row.text(0)];
            const std::string state = row.text(1);
            const std::int64_t count = row.integer(2);
            if (state == "ready") depth.ready = count;
            else if (state == "leased") depth.inFlight = count;
            else if (state == "dead") depth.dead = count;
            if (state != "dead") oldest.emplace_back(row.text(0), row.integer(3));
        });
        // Ready but not due yet: steps' timers and retries backing off.
        for (auto& entry : result) {
            QueueDepth& depth = entry.second;
            q("SELECT COUNT(*) FROM messages WHERE queue = ? AND state = 'ready' AND due_at > ?")
                .query([&](Statement& row) { depth.delayed = row.integer(0); }, entry.first, at);
            depth.ready -= std::min(depth.ready, depth.delayed);
        }
        for (const auto& group : oldest) {
            QueueDepth& depth = result[group.first];
            q("SELECT created_at FROM messages WHERE id = ?").query(
                [&](Statement& row) { depth.oldestAgeMs = std::max(depth.oldestAgeMs, at - row.integer(0)); },
                group.second);
        }
        if (soleUser_) {
            // SQLite: webhook deliveries announced and not yet tried are
            // rows of webhook_outbox (SqlWebhookStore::announced), ready.
            QueueDepth& webhooks = result[kWebhooksQueue];
            q("SELECT COUNT(*) FROM webhook_outbox").query([&](Statement& row) { webhooks.ready += row.integer(0); });
            q("SELECT created_at FROM webhook_outbox ORDER BY id LIMIT 1").query([&](Statement& row) {
                webhooks.oldestAgeMs = std::max(webhooks.oldestAgeMs, at - row.integer(0));
            });
        }
    });
    return result;
}

}  // namespace orderpay::sql
