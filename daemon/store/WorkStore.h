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

    /// Carries each order's processing on from where it stands, one
    /// transaction for the batch (one order's failure leaves the others
    /// done). For each: a start (queued -> processing, the first step
    /// begun) unless orders.concurrency orders are in processing; then
    /// every step whose time is up is completed (its effect and its
    /// step_completed event together, once: the events are the ledger) and
    /// the next begun, until one has time left to wait: its timer, an
    /// order-steps message due then, is written in the same transaction. The
    /// last step moves the order to awaiting_payment. A message that is not
    /// the order's current one (a redelivery) changes nothing.
    virtual std::vector<AdvanceOutcome> advance(const std::vector<OrderWork>& work, const ProcessingPlan& plan) = 0;
    /// Orders in processing now, as the transitions count them.
    virtual std::int64_t ordersInProcessing() = 0;
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
