#include "store/Committer.h"

#include "domain/Errors.h"

using namespace Poco::Data::Keywords;

namespace orderpay {

Committer::Committer(Database& db, bool groupCommit, int maxBatch)
    : db_(db), groupCommit_(groupCommit), maxBatch_(static_cast<std::size_t>(groupCommit ? maxBatch : 1))
{
    thread_ = std::thread([this] { run(); });
}

Committer::~Committer() { stop(); }

void Committer::stop()
{
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    pending_.notify_all();
    if (thread_.joinable()) thread_.join();
}

Committer::Stats Committer::stats() const
{
    std::lock_guard lock(mutex_);
    return stats_;
}

void Committer::write(Work work)
{
    Unit unit{std::move(work), nullptr, false};
    {
        std::unique_lock lock(mutex_);
        if (stopping_) throw StoreUnavailable("the store is shutting down");
        queue_.push_back(&unit);
        pending_.notify_one();
        finished_.wait(lock, [&] { return unit.done; });
    }
    if (unit.error) std::rethrow_exception(unit.error);
}

void Committer::run()
{
    std::deque<Unit*> batch;
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            // Drain what is queued before stopping: a caller is waiting on each.
            pending_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return;
            while (!queue_.empty() && batch.size() < maxBatch_) {
                batch.push_back(queue_.front());
                queue_.pop_front();
            }
        }
        runBatch(batch);
        {
            std::lock_guard lock(mutex_);
            for (Unit* u : batch) u->done = true;
        }
        finished_.notify_all();
        batch.clear();
    }
}

void Committer::runBatch(std::deque<Unit*>& batch)
{
    Poco::Data::Session& s = db_.writer();
    auto failAll = [&](const std::exception_ptr& cause) {
        std::exception_ptr classified;
        try {
            Database::rethrowClassified(cause);
        } catch (...) {
            classified = std::current_exception();
        }
        for (Unit* u : batch) u->error = classified;
    };

    try {
        s << "BEGIN IMMEDIATE", now;
    } catch (...) {
        failAll(std::current_exception());
        std::lock_guard lock(mutex_);
        ++stats_.failedCommits;
        return;
    }

    bool environmentalFailure = false;
    std::exception_ptr environmentalCause;
    for (Unit* u : batch) {
        try {
            s << "SAVEPOINT unit", now;
        } catch (...) {
            environmentalFailure = true;
            environmentalCause = std::current_exception();
            break;
        }
        try {
            u->work(s);
            s << "RELEASE unit", now;
        } catch (const std::exception& e) {
            u->error = std::current_exception();
            if (Database::isEnvironmental(e)) {
                environmentalFailure = true;
                environmentalCause = u->error;
                break;
            }
            try {
                s << "ROLLBACK TO unit", now;
                s << "RELEASE unit", now;
            } catch (...) {
                environmentalFailure = true;
                environmentalCause = std::current_exception();
                break;
            }
        }
    }

    if (!environmentalFailure) {
        try {
            s << "COMMIT", now;
            std::lock_guard lock(mutex_);
            ++stats_.transactions;
            stats_.units += batch.size();
            return;
        } catch (...) {
            environmentalCause = std::current_exception();
        }
    }

    // The disk, not the request, failed: nothing of this batch is kept.
    try {
        s << "ROLLBACK", now;
    } catch (...) {
        // Already rolled back by SQLite itself (it does so on SQLITE_FULL and
        // SQLITE_IOERR); the transaction is gone either way.
    }
    failAll(environmentalCause);
    std::lock_guard lock(mutex_);
    ++stats_.failedCommits;
}

}  // namespace orderpay
