#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

/// The SQL port the store's shared transactions are written against: one
/// statement, prepared once per connection and run many times, and a
/// connection's cache of them by SQL text. SQLite (store/sqlite/Sql.h) and
/// PostgreSQL (store/postgresql/PgStatements.h) implement it.
///
/// The SQL is written once for both: `?` parameters (PostgreSQL's adapter
/// numbers them $1, $2, ...), and `/*FOR UPDATE*/` after a SELECT that
/// reads a row the transaction goes on to change: a comment to SQLite,
/// whose single writer needs no row lock, and a row lock in PostgreSQL,
/// where instances' transactions on one order would otherwise interleave.
namespace orderpay {
class WebhookSubscriptions;
}

namespace orderpay::sql {

class Statement {
public:
    virtual ~Statement() = default;

    /// Runs a statement that returns no rows; returns the rows it changed.
    template <typename... T>
    int exec(const T&... values)
    {
        Run run(*this);
        bindAll(values...);
        while (step()) {
        }
        return changes();
    }

    /// Runs a statement whose outcome the caller does not read: PostgreSQL's
    /// adapter sends it without waiting (pipeline mode), so that a unit's
    /// writes cost one round trip to the server, not one each. Its error,
    /// if any, is thrown by a later statement or by the commit.
    template <typename... T>
    void send(const T&... values)
    {
        Run run(*this);
        bindAll(values...);
        sendRun();
    }

    /// send() with values known only at run time: each text, or NULL.
    void sendTexts(const std::vector<std::optional<std::string>>& values)
    {
        Run run(*this);
        int i = 0;
        for (const auto& v : values) {
            if (v) bindText(++i, *v);
            else bindNull(++i);
        }
        sendRun();
    }

    /// Runs a query and calls `row(*this)` for each row; column(i) reads it.
    template <typename F, typename... T>
    int query(F&& row, const T&... values)
    {
        Run run(*this);
        bindAll(values...);
        int rows = 0;
        while (step()) {
            row(*this);
            ++rows;
        }
        return rows;
    }

    /// Columns of the current row (inside query's callback).
    virtual std::string text(int column) const = 0;
    virtual std::int64_t integer(int column) const = 0;
    virtual bool isNull(int column) const = 0;

    virtual const std::string& sql() const = 0;

protected:
    virtual void bindText(int i, std::string_view value) = 0;
    virtual void bindInteger(int i, std::int64_t value) = 0;
    virtual void bindNull(int i) = 0;
    /// Moves to the next row (the first call runs the statement); false when done.
    virtual bool step() = 0;
    /// Rows the run changed.
    virtual int changes() const = 0;
    /// Ends the run: no snapshot or result is held between runs.
    virtual void reset() = 0;
    /// send()'s run: by default the statement's, waited for.
    virtual void sendRun()
    {
        while (step()) {
        }
    }

private:
    /// Resets the statement when a run ends, thrown out of or not.
    struct Run {
        Statement& st;
        explicit Run(Statement& s) : st(s) {}
        ~Run() { st.reset(); }
    };

    template <typename... T>
    void bindAll(const T&... values)
    {
        int i = 0;
        (bind(++i, values), ...);
    }
    void bind(int i, std::string_view value) { bindText(i, value); }
    void bind(int i, const std::string& value) { bindText(i, value); }
    void bind(int i, const char* value) { bindText(i, value); }
    void bind(int i, std::int64_t value) { bindInteger(i, value); }
    void bind(int i, int value) { bindInteger(i, value); }
    void bind(int i, std::nullptr_t) { bindNull(i); }
    void bind(int i, const std::optional<std::string>& value)
    {
        if (value) bindText(i, *value);
        else bindNull(i);
    }
};

/// What a transaction changed in the counts of orders and payments by
/// status: each unit notes its changes here, and the Committer writes the
/// sums to status_counts once, just before the commit (one row per status
/// changed, not one per order).
struct StatusTally {
    /// (kind, status) -> change: kind "orders" or "payments".
    std::map<std::pair<std::string, std::string>, std::int64_t> changes;

    void add(std::string_view kind, std::string_view status, std::int64_t n = 1)
    {
        changes[{std::string(kind), std::string(status)}] += n;
    }
    void move(std::string_view kind, std::string_view from, std::string_view to)
    {
        if (from == to) return;
        add(kind, from, -1);
        add(kind, to, 1);
    }
};

/// The prepared statements of one connection, by SQL text. Like the
/// connection, used by one thread at a time.
class Statements {
public:
    virtual ~Statements() = default;
    virtual Statement& operator()(std::string_view sql) = 0;

    /// The writer's transaction's changes of status (unused by readers).
    StatusTally tally;
    /// Which webhook endpoints take which events (set by the Committer on
    /// its writers; null for readers).
    const WebhookSubscriptions* webhooks = nullptr;
    /// The transaction queued webhook deliveries: the Committer tells
    /// WebhookSubscriptions once it committed.
    bool webhooksQueued = false;
};

}  // namespace orderpay::sql
