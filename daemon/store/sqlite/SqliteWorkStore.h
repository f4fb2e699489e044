#pragma once

#include "store/MessageSignal.h"
#include "store/WorkStore.h"
#include "store/sqlite/Committer.h"
#include "store/sqlite/Database.h"

namespace orderpay::sqlite {

/// WorkStore on SQLite: each change one unit of the Committer, waited for.
class SqliteWorkStore : public WorkStore {
public:
    SqliteWorkStore(Database& db, Committer& committer, const MessageSignal& published);

    std::vector<AdvanceOutcome> advance(const std::vector<OrderWork>& work, const ProcessingPlan& plan) override;
    std::int64_t ordersInProcessing() override;
    bool failOrder(const std::string& id, const std::string& reason) override;
    bool startPayment(const std::string& id) override;
    PaymentOutcome settlePayment(const std::string& id) override;
    void abandonPayment(const std::string& id) override;

private:
    Database& db_;
    Committer& committer_;
    const MessageSignal& published_;
};

}  // namespace orderpay::sqlite
