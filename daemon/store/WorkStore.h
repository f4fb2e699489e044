#pragma once

#include "domain/Order.h"
#include "store/Records.h"

#include <string>
#include <vector>

namespace orderpay {

/// What the order and payment workers change. Each call is one
/// transaction and returns once it committed. Every change is idempotent:
/// a redelivered message finds the work done and changes nothing, so no
/// step's effect and no status event happens twice.
class WorkStore {
public:
    virtual ~WorkStore() = default;

    /// queued -> processing; returns the status after (unchanged if the
    /// order was no longer queued). PoisonMessage if there is no such order.
    virtual OrderStatus startProcessing(const std::string& id) = 0;
    virtual bool isStepCompleted(const std::string& id, const std::string& step) = 0;
    virtual void recordStepStarted(const std::string& id, const std::string& step) = 0;
    /// Runs the step's effect and adds its step_completed event (the ledger
    /// of steps done), unless the ledger has it already: then false.
    virtual bool completeStep(const std::string& id, const std::string& step) = 0;
    /// processing -> awaiting_payment, and queues the payments held for it.
    virtual bool finishProcessing(const std::string& id) = 0;
    /// With no time to wait between steps, each order's whole processing in
    /// one transaction for the batch (one order's failure leaves the others
    /// done): queued -> processing, every step not in the ledger yet, then
    /// awaiting_payment. The same events and effects as step by step.
    virtual std::vector<InstantOutcome> processInstantly(const std::vector<std::string>& ids,
                                                         const std::vector<std::string>& steps) = 0;
    /// Any non-final state -> failed; held payments are rejected.
    virtual bool failOrder(const std::string& id, const std::string& reason) = 0;

    /// queued -> processing for a payment; false if it is final already.
    virtual bool startPayment(const std::string& id) = 0;
    /// Applies the payment rules (docs/api.md) and moves the payment (and on
    /// success its order) to a final state, exactly once.
    virtual PaymentOutcome settlePayment(const std::string& id) = 0;
    /// A payment whose message dead-lettered: rejected, processing_failed.
    virtual void abandonPayment(const std::string& id) = 0;
};

}  // namespace orderpay
