#pragma once

#include "store/postgresql/PgConnection.h"
#include "store/sql/Statement.h"

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace orderpay::pg {

/// The shared SQL in PostgreSQL's dialect: `?` numbered $1, $2, ... and
/// the `/*FOR ...*/` comments that only PostgreSQL needs (row locks,
/// SKIP LOCKED) made code. Quoted text is left alone.
std::string translate(std::string_view sql);

/// A statement of the SQL port on one libpq connection: the values bound
/// are sent with the run (as text; the server infers their types from the
/// statement, prepared once per connection by Connection::exec).
class PgStatement final : public sql::Statement {
public:
    PgStatement(Connection& connection, std::string sql);

    std::string text(int column) const override;
    std::int64_t integer(int column) const override;
    bool isNull(int column) const override;
    const std::string& sql() const override { return sql_; }

private:
    void bindText(int i, std::string_view value) override;
    void bindInteger(int i, std::int64_t value) override;
    void bindNull(int i) override;
    bool step() override;
    int changes() const override;
    void reset() override;
    void sendRun() override { connection_.send(translated_, params_); }
    Param& slot(int i);

    Connection& connection_;
    std::string sql_;         // as written
    std::string translated_;  // as sent
    std::vector<Param> params_;
    std::optional<Result> result_;
    int row_ = -1;
};

class PgStatements final : public sql::Statements {
public:
    explicit PgStatements(Connection& connection) : connection_(connection) {}

    sql::Statement& operator()(std::string_view sql) override;

private:
    Connection& connection_;
    std::unordered_map<std::string_view, std::unique_ptr<PgStatement>> cache_;
};

}  // namespace orderpay::pg
