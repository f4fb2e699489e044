#pragma once

#include "store/sql/Statement.h"

#include <functional>
#include <optional>
#include <utility>

namespace orderpay::sql {

/// Where the shared transactions read outside the writers: a read
/// connection (the calling thread's own for SQLite, one of a pool for
/// PostgreSQL), inside one read transaction, so that what a call reads (an
/// order, its payments, its events) comes from one commit.
class Readers {
public:
    virtual ~Readers() = default;
    /// Runs `f` in one read transaction; throws StoreUnavailable when the
    /// database cannot be reached.
    virtual void read(const std::function<void(Statements&)>& f) = 0;
    /// Runs `f` with no transaction around it: for one statement, or reads
    /// that need not come from one commit (a poll, a count), which then
    /// cost no BEGIN and COMMIT of their own.
    virtual void readOutsideTransaction(const std::function<void(Statements&)>& f) = 0;
};

/// Runs `f` outside a transaction and returns what it returned.
template <typename F>
auto readOnce(Readers& readers, F&& f)
{
    std::optional<decltype(f(std::declval<Statements&>()))> result;
    readers.readOutsideTransaction([&](Statements& q) { result.emplace(f(q)); });
    return std::move(*result);
}

/// Runs `f` in one read transaction and returns what it returned.
template <typename F>
auto readTransaction(Readers& readers, F&& f)
{
    std::optional<decltype(f(std::declval<Statements&>()))> result;
    readers.read([&](Statements& q) { result.emplace(f(q)); });
    return std::move(*result);
}

}  // namespace orderpay::sql
