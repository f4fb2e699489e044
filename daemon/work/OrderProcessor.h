#pragma once

#include "settings/Settings.h"
#include "logging/Log.h"
#include "store/WorkStore.h"
#include "work/ConsumerTask.h"

#include <array>
#include <chrono>

namespace orderpay {

/// Carries orders through their processing steps to awaiting_payment.
/// It consumes two queues: `orders` (an order to start) and `order-steps`
/// (a step's timer, due when the step in progress has taken its time).
/// Nothing waits in a thread: a message is handled in milliseconds (the
/// store completes every step that is due and writes the timer of the
/// next), so orders.concurrency orders can be in processing with one
/// thread. Each step's effect and its step_completed event commit
/// together, so a redelivered message never repeats a step.
class OrderProcessor : public MessageHandler {
public:
    static constexpr std::array<const char*, 3> kSteps{"validate", "reserve_stock", "prepare_invoice"};

    OrderProcessor(WorkStore& store, const WorkSettings& work);

    void handle(const Delivery& d) override;
    std::size_t batchSize() const override { return WorkSettings::kBatchSize; }
    /// A batch of messages of either queue, one transaction for all.
    std::vector<std::exception_ptr> handleSome(const std::vector<Delivery>& ds) override;
    /// Orders it may start now: the free places of orders.concurrency.
    std::size_t capacity(const std::string& queue) override;
    void onDeadLetter(const Delivery& d, const std::string& reason) override;

    /// The time step `index` takes: the processing time split evenly, the
    /// remainder on the last step.
    std::chrono::milliseconds stepTime(std::size_t index) const;
    const ProcessingPlan& plan() const { return plan_; }

    /// The order (and step, for a timer) a message names; throws
    /// PoisonMessage if it names none.
    static OrderWork decode(const std::string& body);
    static std::string decodeOrderId(const std::string& body) { return decode(body).orderId; }

private:
    /// The log lines and counters of what the store did for one message.
    void report(const Delivery& d, const std::string& id, const AdvanceResult& result);

    WorkStore& store_;
    std::chrono::milliseconds processingTime_;
    ProcessingPlan plan_;
    Poco::Logger& log_;
};

/// Settles a payment against its order, exactly once.
class PaymentProcessor : public MessageHandler {
public:
    explicit PaymentProcessor(WorkStore& store);

    void handle(const Delivery& d) override;
    void onDeadLetter(const Delivery& d, const std::string& reason) override;

    static std::string decodePaymentId(const std::string& body);

private:
    WorkStore& store_;
    Poco::Logger& log_;
};

}  // namespace orderpay
