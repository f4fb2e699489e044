#pragma once

#include "store/MessageSignal.h"
#include "store/WorkStore.h"
#include "store/sql/Committer.h"
#include "store/sql/Readers.h"

namespace orderpay::sql {

/// WorkStore in SQL, for SQLite and PostgreSQL alike: each change one unit
/// of the Committer, waited for. Every unit first reads (and in PostgreSQL
/// locks) the row of the order it changes, so units on one order, from
/// any instance, follow each other.
class SqlWorkStore : public WorkStore {
public:
    SqlWorkStore(Readers& readers, Committer& committer, const MessageSignal& published);

    std::vector<AdvanceOutcome> advance(const std::vector<OrderWork>& work, const ProcessingPlan& plan) override;
    std::int64_t ordersInProcessing() override;
    bool failOrder(const std::string& id, const std::string& reason) override;
    bool startPayment(const std::string& id) override;
    PaymentOutcome settlePayment(const std::string& id) override;
    void abandonPayment(const std::string& id) override;

private:
    Readers& readers_;
    Committer& committer_;
    const MessageSignal& published_;
};

}  // namespace orderpay::sql
