#pragma once

#include "store/MessageSignal.h"
#include "store/WebhookStore.h"
#include "store/sql/Committer.h"
#include "store/sql/Readers.h"

namespace orderpay::sql {

/// WebhookStore in SQL: webhook_endpoints (events as a comma-separated
/// list), webhook_attempts (the delivery log), and the webhooks queue's
/// messages. Keeps the subscriptions the writers read: loaded at start,
/// replaced at each change made here, and refreshed (refreshSubscriptions)
/// for changes made by other instances.
class SqlWebhookStore : public WebhookStore {
public:
    SqlWebhookStore(Readers& readers, Committer& committer, const MessageSignal& published,
                    WebhookSubscriptions& subscriptions);

    void addEndpoint(const WebhookEndpoint& endpoint) override;
    std::vector<WebhookEndpoint> endpoints() override;
    std::optional<WebhookEndpoint> endpoint(const std::string& id) override;
    bool removeEndpoint(const std::string& id) override;
    std::optional<WebhookEndpoint> rotate(const std::string& id, const std::string& secret,
                                          std::int64_t previousUntil) override;
    std::vector<WebhookAttempt> attempts(const std::string& endpointId, int limit, std::int64_t after) override;
    void queueTest(const std::string& endpointId, const std::string& eventId) override;
    std::vector<StoredMessage> announced(std::int64_t afterId, std::size_t max) override;
    std::optional<OrderEventSnapshot> orderEvent(const std::string& orderId, std::int64_t seq,
                                                 const std::string& paymentId) override;
    void settle(const std::vector<std::pair<StoredMessage, WebhookAttempt>>& attempts,
                const std::vector<WebhookSettlement>& settlements, std::function<void()> done) override;
    void resume(const std::string& endpointId) override;
    void pruneAttempts(std::int64_t before) override;
    std::pair<std::uint64_t, std::size_t> writersBusy() const override
    {
        return {committer_.busyMicros(), committer_.writerCount()};
    }
    WebhookSubscriptions& subscriptions() override { return subscriptions_; }

private:
    /// Settles a delivery read from webhook_outbox (its id negated).
    static void settleAnnounced(Statements& w, const StoredMessage& m, const WebhookSettlement& s, bool tried,
                                std::int64_t now);
    /// Reads the enabled endpoints into the subscriptions.
    void refresh(const std::vector<WebhookEndpoint>& all);

    Readers& readers_;
    Committer& committer_;
    const MessageSignal& published_;
    WebhookSubscriptions& subscriptions_;
};

}  // namespace orderpay::sql
