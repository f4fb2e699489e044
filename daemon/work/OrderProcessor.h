#pragma once

#include "settings/Settings.h"
#include "logging/Log.h"
#include "store/WorkStore.h"
#include "work/ConsumerTask.h"

#include <array>
#include <chrono>

namespace orderpay {

/// Works an order through its processing steps to awaiting_payment. Each
/// step's effect and its step_completed event commit together with the
/// step's ledger entry, so a redelivered order resumes after its last
/// completed step and never repeats one.
class OrderProcessor : public MessageHandler {
public:
    static constexpr std::array<const char*, 3> kSteps{"validate", "reserve_stock", "prepare_invoice"};

    OrderProcessor(WorkStore& store, const WorkSettings& work);

    void handle(const Delivery& d, const Sleep& sleep) override;
    /// With instant processing, a batch of orders a transaction.
    std::size_t batchSize() const override { return batchSize_; }
    std::vector<std::exception_ptr> handleSome(const std::vector<Delivery>& ds, const Sleep& sleep) override;
    void onDeadLetter(const Delivery& d, const std::string& reason) override;

    /// The time step `index` takes: the processing time split evenly, the
    /// remainder on the last step.
    std::chrono::milliseconds stepTime(std::size_t index) const;

    /// The order id a message names; throws PoisonMessage if it names none.
    static std::string decodeOrderId(const std::string& body);

private:
    /// The log lines and counters of an order processed instantly.
    void reportInstant(const Delivery& d, const std::string& id, const InstantResult& result);

    WorkStore& store_;
    std::chrono::milliseconds processingTime_;
    std::size_t batchSize_;
    Poco::Logger& log_;
};

/// Settles a payment against its order, exactly once.
class PaymentProcessor : public MessageHandler {
public:
    explicit PaymentProcessor(WorkStore& store);

    void handle(const Delivery& d, const Sleep& sleep) override;
    void onDeadLetter(const Delivery& d, const std::string& reason) override;

    static std::string decodePaymentId(const std::string& body);

private:
    WorkStore& store_;
    Poco::Logger& log_;
};

}  // namespace orderpay
