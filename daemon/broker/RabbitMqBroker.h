#pragma once

#include "broker/AmqpConnection.h"
#include "broker/Broker.h"
#include "common/PeriodicThread.h"
#include "settings/Settings.h"
#include "store/OutboxStore.h"

#include <Poco/Logger.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

namespace orderpay {

/// Both queues on RabbitMQ, with the guarantees of the embedded broker.
///
/// Publishing goes through the outbox (OutboxStore): the store writes each
/// message in the transaction of the state it announces; a relay
/// thread claims pending rows, publishes them persistent with publisher
/// confirms, and deletes them only after the broker's ack. RabbitMQ being
/// away therefore never fails a request: messages wait in the outbox.
///
/// Consuming: each worker thread gets its own connection (rabbitmq-c
/// connections are not thread-safe) with a consumer for each queue it takes
/// from (the order workers: orders and order-steps), manual acks, and the
/// prefetch of broker.rabbitmq.prefetch (at least two batches) per consumer.
/// A step's timer waits in the outbox until due; the relay publishes it
/// then. Delivery attempts are counted in the store,
/// committed before the message is handed out (a batch's in one
/// transaction), so a delivery cut short by a crash counts
/// toward retry.max_attempts as with the embedded queue. Retry goes through per-attempt delay queues (a TTL
/// that dead-letters back to the work exchange), written to the outbox
/// (committed) before the original is acked, and published by the relay:
/// consumer channels never publish, so their frames are only deliveries.
/// Dead letters the daemon gives up on are kept in the database (the
/// operator routes list and replay them); `<prefix><queue>.dead` receives
/// only what RabbitMQ dead-letters itself (a quorum queue's delivery limit).
///
/// Topology (prefix "orderpay." by default), declared at every connect:
///   exchange <p>work (direct)   -> queues <p>orders, <p>payments
///   exchange <p>dead (direct)   -> queues <p>orders.dead, <p>payments.dead
///   queues <p><queue>.retry.<n> (TTL = backoff of attempt n, then back to <p>work)
///
/// A monitor thread with a connection of its own looks at the queues every
/// second: their depths and whether the broker answers are what status()
/// reports, so no caller of status() ever waits on the network.
class RabbitMqBroker : public Broker {
public:
    RabbitMqBroker(OutboxStore& outbox, const BrokerSettings& broker, const WorkSettings& work);
    ~RabbitMqBroker() override;

    void start() override;
    void stop() override;
    /// Up to `max` of the messages the prefetch has brought in, their
    /// attempts counted in one transaction.
    std::vector<Delivery> fetchSome(const std::string& queue, std::size_t max,
                                    std::chrono::milliseconds timeout) override;
    void ack(const Delivery& d) override;
    void retry(const Delivery& d, const std::string& reason) override;
    void deadLetter(const Delivery& d, const std::string& reason) override;
    void release(const Delivery& d) override;
    void notifyPublished(const std::string& queue) override;
    BrokerStatus status() const override;
    std::string name() const override;

    std::string queueName(const std::string& queue) const { return prefix_ + queue; }

private:
    /// A message delivered to a thread's connection for one of its queues
    /// while it asked for another: held (unacked, uncounted) until asked for.
    struct Held {
        Delivery delivery;
        bool redelivered = false;
    };
    /// A worker thread's connection: one consumer per queue the thread
    /// takes from (tagged with the queue's name), each with its own prefetch.
    struct Consumer {
        std::unique_ptr<AmqpConnection> connection;
        std::set<std::string> queues;     // asked for by the thread
        std::set<std::string> consuming;  // consumed on this connection
        std::map<std::string, std::deque<Held>> held;
        std::chrono::steady_clock::time_point retryAt;
        std::chrono::milliseconds backoff{0};
        /// Since when the database has refused to count this consumer's
        /// deliveries; and whether it handed them back for that and waits
        /// for the database before it consumes again.
        std::optional<std::chrono::steady_clock::time_point> storeLostAt;
        bool waitingForStore = false;
        std::string describe() const;
    };

    std::unique_ptr<AmqpConnection> connect(const std::string& role);
    void declareTopology(AmqpConnection& c);
    void relayLoop();
    bool relayOnce(AmqpConnection& c);
    Consumer& consumerForThisThread(const std::string& queue);
    void dropConsumer(Consumer& consumer, const std::string& why);
    void requeueThroughOutbox(const Delivery& d, const std::string& exchange, const std::string& routingKey,
                              const std::map<std::string, std::string>& headers);
    /// Acks a delivery whose outcome the store holds now (a copy in the
    /// outbox, a dead letter).
    void ackOriginal(const Delivery& d);
    bool ensureConsuming(Consumer& c, std::chrono::milliseconds timeout);
    void recordDeliveries(std::vector<Delivery>& ds);
    /// The monitor's tick: depths of the outbox and of RabbitMQ's queues.
    void lookAtQueues();
    void setRelayConnected(bool connected, const std::string& why);
    std::chrono::milliseconds nextBackoff(std::chrono::milliseconds current);

    OutboxStore& outbox_;
    /// The nodes (broker.rabbitmq.uri, comma-separated) and the one that
    /// answered last: connections go there first, and to the next when it
    /// does not answer.
    std::vector<AmqpUri> nodes_;
    std::atomic<std::size_t> preferred_{0};
    AmqpUri node() const { return nodes_[preferred_.load() % nodes_.size()]; }
    /// A connection to the preferred node, else to the next that answers.
    std::unique_ptr<AmqpConnection> open(const std::string& name, std::chrono::milliseconds timeout);
    std::string prefix_;
    int prefetch_;
    std::string queueType_;
    std::chrono::milliseconds backoffBase_;
    int maxAttempts_;
    std::chrono::seconds heartbeat_;
    /// How long a consumer keeps the deliveries the database would not
    /// count (it is unreachable) before it hands them back for the instances
    /// that can reach it: a third of broker.lease.
    std::chrono::milliseconds holdFor_;
    /// How long an outbox row this instance claimed for relaying stays its
    /// (broker.lease): a relay that died has its claims published by
    /// another instance after it.
    std::chrono::milliseconds claimTime_;
    Poco::Logger& log_;

    std::atomic<bool> stopping_{false};
    std::atomic<bool> relayConnected_{false};
    std::atomic<bool> relayKnown_{false};  // a first connect attempt has ended
    std::mutex relayMutex_;
    std::condition_variable relayWake_;
    bool pending_ = false;
    std::thread relay_;

    std::mutex consumersMutex_;
    std::unordered_map<std::thread::id, std::unique_ptr<Consumer>> consumers_;

    // The monitor's: its connection (its thread only), what it saw, and
    // when the broker last answered it (steady milliseconds; 0: never).
    std::unique_ptr<AmqpConnection> inspector_;
    mutable std::mutex statusMutex_;
    QueueDepths depths_;  // under statusMutex_
    std::atomic<std::int64_t> answeredAt_{0};
    PeriodicThread monitor_;
};

}  // namespace orderpay
