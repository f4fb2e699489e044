#include "store/postgresql/PgStatements.h"

namespace orderpay::pg {

std::string translate(std::string_view sql)
{
    std::string out;
    out.reserve(sql.size() + 16);
    int n = 0;
    for (std::size_t i = 0; i < sql.size(); ++i) {
        const char c = sql[i];
        if (c == '\'') {
            // A literal, copied through its closing quote ('' inside is two quotes).
            const std::size_t end = sql.find('\'', i + 1);
            const std::size_t stop = end == std::string_view::npos ? sql.size() : end + 1;
            out.append(sql.substr(i, stop - i));
            i = stop - 1;
        } else if (c == '?') {
            out += '$' + std::to_string(++n);
        } else if (sql.substr(i, 6) == "/*FOR ") {
            const std::size_t end = sql.find("*/", i);
            if (end == std::string_view::npos) {
                out.append(sql.substr(i));
                break;
            }
            out.append(sql.substr(i + 2, end - i - 2));
            i = end + 1;
        } else {
            out += c;
        }
    }
    return out;
}

PgStatement::PgStatement(Connection& connection, std::string sql)
    : connection_(connection), sql_(std::move(sql)), translated_(translate(sql_))
{
}

Param& PgStatement::slot(int i)
{
    if (params_.size() < static_cast<std::size_t>(i)) params_.resize(static_cast<std::size_t>(i), Param(nullptr));
    return params_[static_cast<std::size_t>(i - 1)];
}

void PgStatement::bindText(int i, std::string_view value) { slot(i) = Param(value); }
void PgStatement::bindInteger(int i, std::int64_t value) { slot(i) = Param(value); }
void PgStatement::bindNull(int i) { slot(i) = Param(nullptr); }

bool PgStatement::step()
{
    if (!result_) {
        result_.emplace(connection_.exec(translated_, params_));
        row_ = -1;
    }
    return ++row_ < result_->rows();
}

int PgStatement::changes() const { return result_ ? static_cast<int>(result_->changed()) : 0; }

void PgStatement::reset()
{
    result_.reset();
    params_.clear();
    row_ = -1;
}

std::string PgStatement::text(int column) const
{
    return result_->isNull(row_, column) ? std::string() : result_->text(row_, column);
}

std::int64_t PgStatement::integer(int column) const { return result_->integer(row_, column); }

bool PgStatement::isNull(int column) const { return result_->isNull(row_, column); }

sql::Statement& PgStatements::operator()(std::string_view sql)
{
    if (auto it = cache_.find(sql); it != cache_.end()) return *it->second;
    auto statement = std::make_unique<PgStatement>(connection_, std::string(sql));
    PgStatement& st = *statement;
    cache_.emplace(std::string_view(st.sql()), std::move(statement));
    return st;
}

}  // namespace orderpay::pg
