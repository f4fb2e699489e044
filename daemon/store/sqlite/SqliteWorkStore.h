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

    OrderStatus startProcessing(const std::string& id) override;
    bool isStepCompleted(const std::string& id, const std::string& step) override;
    void recordStepStarted(const std::string& id, const std::string& step) override;
    bool completeStep(const std::string& id, const std::string& step) override;
    bool finishProcessing(const std::string& id) override;
    std::vector<InstantOutcome> processInstantly(const std::vector<std::string>& ids,
                                                 const std::vector<std::string>& steps) override;
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
