#include "work/ConsumerTask.h"

#include "domain/Clock.h"
#include "domain/Errors.h"
#include "logging/Log.h"

#include <pthread.h>

namespace orderpay {

std::vector<std::exception_ptr> MessageHandler::handleSome(const std::vector<Delivery>& ds)
{
    std::vector<std::exception_ptr> errors(ds.size());
    for (std::size_t i = 0; i < ds.size(); ++i) {
        try {
            handle(ds[i]);
        } catch (...) {
            errors[i] = std::current_exception();
        }
    }
    return errors;
}

ConsumerTask::ConsumerTask(const std::string& name, Broker& broker, std::vector<std::string> queues,
                           MessageHandler& handler, int maxAttempts)
    : Poco::Task(name),
      broker_(broker),
      queues_(std::move(queues)),
      handler_(handler),
      maxAttempts_(maxAttempts),
      log_(Poco::Logger::get("orderpay.work"))
{
    touch();
}

void ConsumerTask::touch()
{
    lastProgress_ = clock::steadyMillis();
}

void ConsumerTask::runTask()
{
    pthread_setname_np(pthread_self(), name().substr(0, 15).c_str());  // "orders-1", "payments-2"
    const std::size_t batch = std::max<std::size_t>(1, handler_.batchSize());
    // Each queue is asked without waiting while any has work; a round that
    // found nothing waits on each in turn (woken early by a publish), so a
    // message on either is taken within this time.
    const auto idleWait = std::chrono::milliseconds(queues_.size() > 1 ? 100 : 500);
    bool idle = false;
    while (!isCancelled()) {
        touch();
        bool took = false;
        bool asked = false;
        for (const auto& queue : queues_) {
            std::size_t max = 0;
            try {
                max = std::min(batch, handler_.capacity(queue));
            } catch (const std::exception& e) {
                logLine(log_, Poco::Message::PRIO_ERROR, "cannot tell what queue " + queue + " may take: " + e.what(),
                        {{"QUEUE", queue}});
            }
            if (max == 0) continue;
            asked = true;
            if (takeFrom(queue, max, idle ? idleWait : std::chrono::milliseconds(0))) took = true;
            if (isCancelled()) return;
        }
        if (!asked && sleep(idleWait.count())) break;
        idle = !took;
    }
}

bool ConsumerTask::takeFrom(const std::string& queue, std::size_t max, std::chrono::milliseconds wait)
{
    std::vector<Delivery> ds;
    try {
        ds = broker_.fetchSome(queue, max, wait);
    } catch (const StoreUnavailable&) {
        // The database refuses writes; the store logs that once, not every
        // worker once a second. Try again in a while.
        sleep(1000);
        return false;
    } catch (const std::exception& e) {
        logLine(log_, Poco::Message::PRIO_ERROR, "cannot fetch from queue " + queue + ": " + e.what(),
                {{"QUEUE", queue}});
        sleep(1000);
        return false;
    }
    if (ds.size() == 1) {
        guarded(ds.front(), [&](const Delivery& d) { settle(d); });
    } else if (!ds.empty()) {
        settleSome(ds);
    }
    touch();
    return !ds.empty();
}

template <typename F>
bool ConsumerTask::guarded(const Delivery& d, F&& settleOne)
{
    try {
        settleOne(d);
    } catch (const StoreUnavailable&) {
        settleWhenWritable(d);
    } catch (const std::exception& e) {
        // The broker could not record the outcome (database unavailable):
        // the lease runs out and the message comes back; the handler's
        // idempotence makes that safe.
        logLine(log_, Poco::Message::PRIO_ERROR,
                "cannot settle message " + std::to_string(d.messageId) + " on " + d.queue + ": " + e.what(),
                {{"QUEUE", d.queue}, {"MESSAGE_ID", std::to_string(d.messageId)}});
        if (sleep(1000)) return false;
    }
    return true;
}

void ConsumerTask::settleWhenWritable(const Delivery& d)
{
    while (!sleep(1000)) {
        touch();
        try {
            settle(d);
            return;
        } catch (const StoreUnavailable&) {
            // Still refused (logged once by the store); the watchdog heard from us.
        } catch (const std::exception& e) {
            logLine(log_, Poco::Message::PRIO_ERROR,
                    "cannot settle message " + std::to_string(d.messageId) + " on " + d.queue + ": " + e.what(),
                    {{"QUEUE", d.queue}, {"MESSAGE_ID", std::to_string(d.messageId)}});
            return;
        }
    }
}

void ConsumerTask::deadLetter(const Delivery& d, const std::string& reason)
{
    handler_.onDeadLetter(d, reason);
    broker_.deadLetter(d, reason);
    logLine(log_, Poco::Message::PRIO_ERROR, "message dead-lettered: " + reason,
            {{"QUEUE", d.queue}, {"MESSAGE_ID", std::to_string(d.messageId)}});
}

bool ConsumerTask::gaveUp(const Delivery& d)
{
    if (d.attempt <= maxAttempts_) return false;
    deadLetter(d, "gave up after " + std::to_string(maxAttempts_) + (maxAttempts_ == 1 ? " delivery" : " deliveries") +
                      " (retry.max_attempts); the last one never finished");
    return true;
}

void ConsumerTask::settle(const Delivery& d)
{
    if (gaveUp(d)) return;
    std::exception_ptr error;
    try {
        handler_.handle(d);
    } catch (...) {
        error = std::current_exception();
    }
    conclude(d, error);
}

void ConsumerTask::settleSome(const std::vector<Delivery>& ds)
{
    std::vector<Delivery> work;
    for (const auto& d : ds) {
        if (!guarded(d, [&](const Delivery& one) {
                if (!gaveUp(one)) work.push_back(one);
            }))
            return;
    }
    if (work.empty()) return;
    const auto errors = handler_.handleSome(work);
    for (std::size_t i = 0; i < work.size(); ++i) {
        const std::exception_ptr error = i < errors.size() ? errors[i] : nullptr;
        if (!guarded(work[i], [&](const Delivery& d) { conclude(d, error); })) return;
    }
}

void ConsumerTask::conclude(const Delivery& d, const std::exception_ptr& error)
{
    const Fields fields{{"QUEUE", d.queue}, {"MESSAGE_ID", std::to_string(d.messageId)}};
    if (!error) {
        broker_.ack(d);
        return;
    }
    try {
        std::rethrow_exception(error);
    } catch (const Postponed& e) {
        broker_.release(d);
        logLine(log_, Poco::Message::PRIO_DEBUG, std::string("message handed back to queue ") + d.queue + ": " + e.what(),
                fields);
    } catch (const Interrupted&) {
        broker_.release(d);
        logLine(log_, Poco::Message::PRIO_INFORMATION, "shutting down: message handed back to queue " + d.queue,
                fields);
    } catch (const StoreUnavailable&) {
        // Not the message's fault, and recording a retry would fail too:
        // the caller settles it again once the database takes writes.
        throw;
    } catch (const PermanentError& e) {
        deadLetter(d, std::string("cannot be processed: ") + e.what());
    } catch (const std::exception& e) {
        if (d.attempt >= maxAttempts_) {
            deadLetter(d, "failed " + std::to_string(d.attempt) + " times, last: " + e.what());
        } else {
            broker_.retry(d, e.what());
            logLine(log_, Poco::Message::PRIO_WARNING,
                    "attempt " + std::to_string(d.attempt) + " failed, will retry: " + e.what(), fields);
        }
    }
}

}  // namespace orderpay
