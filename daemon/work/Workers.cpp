#include "work/Workers.h"

#include "domain/Queues.h"

namespace orderpay {

Workers::Workers(Broker& broker, WorkStore& store, const WorkSettings& settings)
    : broker_(broker),
      settings_(settings),
      orders_(store, settings),
      payments_(store),
      pool_("workers", settings.orderWorkers + settings.paymentWorkers,
            settings.orderWorkers + settings.paymentWorkers),
      tasks_(pool_)
{
    auto add = [&](const std::string& name, std::vector<std::string> queues, MessageHandler& handler) {
        consumers_.emplace_back(new ConsumerTask(name, broker_, std::move(queues), handler, settings_.maxAttempts));
    };
    // Steps of orders already in processing first: they free the places
    // (orders.concurrency) that new orders wait for.
    for (int i = 0; i < settings.orderWorkers; ++i)
        add("orders-" + std::to_string(i + 1), {kOrderStepsQueue, kOrdersQueue}, orders_);
    for (int i = 0; i < settings.paymentWorkers; ++i)
        add("payments-" + std::to_string(i + 1), {kPaymentsQueue}, payments_);
}

Workers::~Workers() { stop(); }

void Workers::start()
{
    started_ = true;
    // The TaskManager takes a reference of its own to each task.
    for (auto& task : consumers_) {
        task->duplicate();
        tasks_.start(task.get());
    }
}

void Workers::stop()
{
    if (!started_) return;
    started_ = false;
    tasks_.cancelAll();
    tasks_.joinAll();
}

std::vector<const ConsumerTask*> Workers::consumers() const
{
    std::vector<const ConsumerTask*> all;
    for (const auto& task : consumers_) all.push_back(task.get());
    return all;
}

}  // namespace orderpay
