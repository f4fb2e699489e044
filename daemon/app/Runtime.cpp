#include "app/Runtime.h"

#include "broker/EmbeddedBroker.h"
#include "broker/RabbitMqBroker.h"
#include "domain/Clock.h"
#include "domain/Queues.h"
#include "logging/Log.h"

#include <malloc.h>

/// jemalloc's control interface, if orderpayd is linked with it (the
/// default build; not the sanitizers' or the tests' programs).
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

namespace orderpay {
namespace {

/// Gives the memory the allocator holds free back to the system: every
/// arena of jemalloc's ("arena.<MALLCTL_ARENAS_ALL>.purge"), or glibc's.
void releaseFreeMemory()
{
    if (mallctl != nullptr) mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
    else malloc_trim(0);
}

}  // namespace

Runtime::Runtime(const Settings& settings, http::Auth& auth)
    : settings_(settings),
      listener_(settings.http),
      // Allocators keep freed pages in their arenas: under steady load the
      // RSS crept up by the fragments, and a burst (list pages of 200
      // orders) held megabytes for as long as the interval. So every 2 s.
      sweeper_("sweeper", std::chrono::seconds(2), [this] { sweep(++sweeps_); })
{
    store_ = Store::open(settings.store);
    webhooks_ = std::make_unique<webhooks::Dispatcher>(store_->queue(), store_->webhooks(), settings.webhooks,
                                                       settings.broker.lease, settings.store.kind == "postgresql");
    if (settings.broker.kind == "rabbitmq") {
        broker_ = std::make_unique<RabbitMqBroker>(store_->outbox(), settings.broker, settings.work);
    } else {
        broker_ = std::make_unique<EmbeddedBroker>(store_->queue(), settings.work, settings.broker.lease);
    }
    Broker& broker = *broker_;
    store_->setMessageListener([&broker, &dispatcher = *webhooks_](const std::string& queue) {
        if (queue == kWebhooksQueue) dispatcher.wake();
        else broker.notifyPublished(queue);
    });
    broker.start();

    workers_ = std::make_unique<Workers>(broker, store_->work(), settings.work);
    workers_->start();
    webhooks_->start();

    status_ = std::make_unique<StatusBoard>(store_->admin(), store_->health(), broker, settings);
    status_->start();

    service_ = std::make_unique<http::Service>(
        http::Service{store_->api(), store_->health(), store_->admin(), store_->webhooks(), *status_, broker,
                      settings, auth, webhooks_.get()});
    server_ = std::make_unique<http::HttpServer>(*service_, settings.http, listener_);
    server_->start();

    watchdog_ = std::make_unique<systemd::Watchdog>(*server_, workers_->consumers(), broker);
    watchdog_->start();
    sweeper_.start();
}

Runtime::~Runtime() = default;

void Runtime::sweep(unsigned tick)
{
    if (tick % 30 == 0) {  // once a minute
        try {
            store_->health().purgeIdempotencyKeys(clock::nowMillis() - settings_.http.idempotencyTtl.count());
        } catch (const std::exception& e) {
            static Poco::Logger& log = Poco::Logger::get("orderpay");
            logLine(log, Poco::Message::PRIO_WARNING, std::string("idempotency key sweep failed: ") + e.what());
        }
    }
    releaseFreeMemory();  // a few milliseconds for a heap of this size
}

std::string Runtime::summary() const
{
    return "listening on " + listener_.address() + ", " + store_->describe() + ", broker " + broker_->name() + ", " +
           std::to_string(settings_.work.orderWorkers) + " order and " +
           std::to_string(settings_.work.paymentWorkers) + " payment workers";
}

}  // namespace orderpay
