#include "work/ConsumerTask.h"

#include "domain/Errors.h"
#include "logging/Log.h"

#include <cstdlib>
#include <thread>

namespace orderpay {

ConsumerTask::ConsumerTask(const std::string& name, Broker& broker, std::string queue, MessageHandler& handler,
                           int maxAttempts)
    : Poco::Task(name),
      broker_(broker),
      queue_(std::move(queue)),
      handler_(handler),
      maxAttempts_(maxAttempts),
      log_(Poco::Logger::get("orderpay.work"))
{
    touch();
}

void ConsumerTask::touch()
{
    using namespace std::chrono;
    lastProgress_ = duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

void ConsumerTask::runTask()
{
    while (!isCancelled()) {
        touch();
        std::optional<Delivery> d;
        try {
            d = broker_.fetch(queue_, std::chrono::milliseconds(500));
        } catch (const StoreUnavailable&) {
            // The database refuses writes; the store logs that once, not
            // every worker once a second. Try again in a while.
            if (sleep(1000)) break;
            continue;
        } catch (const std::exception& e) {
            logLine(log_, Poco::Message::PRIO_ERROR, "cannot fetch from queue " + queue_ + ": " + e.what(),
                    {{"QUEUE", queue_}});
            if (sleep(1000)) break;
            continue;
        }
        if (!d) continue;
        try {
            settle(*d);
        } catch (const StoreUnavailable&) {
            settleWhenWritable(*d);
        } catch (const std::exception& e) {
            // The broker could not record the outcome (database unavailable):
            // the lease runs out and the message comes back; the handler's
            // idempotence makes that safe.
            logLine(log_, Poco::Message::PRIO_ERROR,
                    "cannot settle message " + std::to_string(d->messageId) + " on " + queue_ + ": " + e.what(),
                    {{"QUEUE", queue_}, {"MESSAGE_ID", std::to_string(d->messageId)}});
            if (sleep(1000)) break;
        }
        touch();
    }
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
                    "cannot settle message " + std::to_string(d.messageId) + " on " + queue_ + ": " + e.what(),
                    {{"QUEUE", queue_}, {"MESSAGE_ID", std::to_string(d.messageId)}});
            return;
        }
    }
}

void ConsumerTask::settle(const Delivery& d)
{
    const Fields fields{{"QUEUE", queue_}, {"MESSAGE_ID", std::to_string(d.messageId)}};
    if (d.attempt > maxAttempts_) {
        const std::string reason = "gave up after " + std::to_string(maxAttempts_) +
                                   " deliveries (retry.max_attempts); the last one never finished";
        handler_.onDeadLetter(d, reason);
        broker_.deadLetter(d, reason);
        logLine(log_, Poco::Message::PRIO_ERROR, "message dead-lettered: " + reason, fields);
        return;
    }
    if (const char* wedge = std::getenv("ORDERPAY_FAULT_WEDGE_QUEUE"); wedge && queue_ == wedge) {
        // Test-only fault switch: behave like a handler stuck for good (no
        // progress, no end), so the watchdog's reaction can be tested.
        for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    try {
        // Sleeping through a processing step is progress: the watchdog
        // hears from this worker at least every half second.
        handler_.handle(d, [this](std::chrono::milliseconds ms) {
            const auto end = std::chrono::steady_clock::now() + ms;
            for (auto left = ms; left.count() > 0;
                 left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now())) {
                if (sleep(std::min<long>(left.count(), 500))) return true;
                touch();
            }
            return false;
        });
        broker_.ack(d);
    } catch (const Interrupted&) {
        broker_.release(d);
        logLine(log_, Poco::Message::PRIO_INFORMATION, "shutting down: message handed back to queue " + queue_,
                fields);
    } catch (const StoreUnavailable&) {
        // Not the message's fault, and recording a retry would fail too:
        // runTask settles it again once the database takes writes.
        throw;
    } catch (const PermanentError& e) {
        const std::string reason = std::string("cannot be processed: ") + e.what();
        handler_.onDeadLetter(d, reason);
        broker_.deadLetter(d, reason);
        logLine(log_, Poco::Message::PRIO_ERROR, "message dead-lettered: " + reason, fields);
    } catch (const std::exception& e) {
        if (d.attempt >= maxAttempts_) {
            const std::string reason = "failed " + std::to_string(d.attempt) + " times, last: " + e.what();
            handler_.onDeadLetter(d, reason);
            broker_.deadLetter(d, reason);
            logLine(log_, Poco::Message::PRIO_ERROR, "message dead-lettered: " + reason, fields);
        } else {
            broker_.retry(d, e.what());
            logLine(log_, Poco::Message::PRIO_WARNING,
                    "attempt " + std::to_string(d.attempt) + " failed, will retry: " + e.what(), fields);
        }
    }
}

}  // namespace orderpay
