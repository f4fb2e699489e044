#pragma once

#include "broker/Broker.h"
#include "settings/Settings.h"
#include "store/WorkStore.h"
#include "work/ConsumerTask.h"
#include "work/OrderProcessor.h"

#include <Poco/AutoPtr.h>
#include <Poco/TaskManager.h>
#include <Poco/ThreadPool.h>

#include <vector>

namespace orderpay {

/// The worker threads: orders.workers consumers of the orders and
/// order-steps queues and payments.workers of the payments queue, on a
/// thread pool of their own. start() starts them; stop() (or destruction)
/// cancels them and waits for each to settle what it holds.
class Workers {
public:
    Workers(Broker& broker, WorkStore& store, const WorkSettings& settings);
    ~Workers();
    Workers(const Workers&) = delete;
    Workers& operator=(const Workers&) = delete;

    void start();
    void stop();

    /// Every consumer, for the watchdog's look at their progress; valid
    /// for this object's lifetime.
    std::vector<const ConsumerTask*> consumers() const;

private:
    Broker& broker_;
    const WorkSettings settings_;
    OrderProcessor orders_;
    PaymentProcessor payments_;
    // Not Poco's default pool: joinAll() on it would also wait for threads
    // that never end.
    Poco::ThreadPool pool_;
    Poco::TaskManager tasks_;
    std::vector<Poco::AutoPtr<ConsumerTask>> consumers_;  // shared with tasks_, which drops a task when it ends
    bool started_ = false;
};

}  // namespace orderpay
