#include "broker/RabbitMqBroker.h"

#include "domain/Clock.h"
#include "domain/Errors.h"
#include "logging/Log.h"
#include "metrics/Metrics.h"

#include <Poco/NumberParser.h>

#include <random>
#include <pthread.h>

namespace orderpay {
namespace {

constexpr std::chrono::milliseconds kConfirmTimeout{10000};
constexpr std::chrono::milliseconds kMaxReconnectDelay{30000};
constexpr std::size_t kRelayBatch = 256;
const std::vector<std::string> kQueues = {kOrdersQueue, kOrderStepsQueue, kPaymentsQueue};
/// How long the idle relay waits before it looks for timers that came due.
constexpr std::chrono::milliseconds kRelayIdle{200};
/// The monitor waits no longer than this for a connect or an answer: a
/// broker that does not answer is reported within BrokerStatus::kUnresponsiveAfter.
constexpr std::chrono::milliseconds kInspectTimeout{2000};

/// A worker's batch is at most what the broker has handed over and not yet
/// had acked. Workers take batches (WorkSettings::kBatchSize): a smaller
/// prefetch has each worker wait for the broker between batches, so the
/// prefetch holds two of them.
int prefetchFor(int configured)
{
    return std::max(configured, static_cast<int>(2 * WorkSettings::kBatchSize));
}

/// The AMQP heartbeat: RabbitMQ gives up on a connection that stayed silent
/// for about this long (two missed heartbeats at half of it), and hands its
/// unacked deliveries to another instance. A third of broker.lease, so an
/// instance cut off from the broker has its work taken over within the
/// lease; at least 2 s (a worker between batches must not miss it), at most
/// RabbitMQ's usual 30 s. A worker calls into rabbitmq-c between batches,
/// which take milliseconds (no step is waited out in a handler).
std::chrono::seconds heartbeatFor(std::chrono::milliseconds lease)
{
    return std::clamp(std::chrono::duration_cast<std::chrono::seconds>(lease / 3), std::chrono::seconds(2),
                      std::chrono::seconds(30));
}

}  // namespace

RabbitMqBroker::RabbitMqBroker(OutboxStore& outbox, const BrokerSettings& broker, const WorkSettings& work)
    : outbox_(outbox),
      nodes_(AmqpUri::parseList(broker.rabbitmqUri)),
      prefix_(broker.rabbitmqPrefix),
      prefetch_(prefetchFor(broker.rabbitmqPrefetch)),
      queueType_(broker.rabbitmqQueueType),
      backoffBase_(std::max(work.retryBackoff, std::chrono::milliseconds(1))),
      maxAttempts_(work.maxAttempts),
      heartbeat_(heartbeatFor(broker.lease)),
      holdFor_(std::max<std::chrono::milliseconds>(std::chrono::seconds(1), broker.lease / 3)),
      claimTime_(broker.lease),
      log_(Poco::Logger::get("orderpay.broker")),
      monitor_("amqp-monitor", std::chrono::seconds(1), [this] { lookAtQueues(); })
{
    for (auto& n : nodes_) n.caFile = broker.rabbitmqCaFile;
    for (const auto& q : kQueues) depths_[q] = {};
}

RabbitMqBroker::~RabbitMqBroker() { stop(); }

void RabbitMqBroker::start()
{
    stopping_ = false;
    relay_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "amqp-relay");
        relayLoop();
    });
    monitor_.start();
}

void RabbitMqBroker::stop()
{
    stopping_ = true;
    relayWake_.notify_all();
    if (relay_.joinable()) relay_.join();
    monitor_.stop();
    inspector_.reset();
    // Consumer connections are closed with the broker object, after the
    // worker threads that own them have ended.
}

std::string RabbitMqBroker::name() const
{
    std::string all;
    for (const auto& n : nodes_) all += (all.empty() ? "" : ",") + n.redacted();
    return "rabbitmq " + all;
}

std::unique_ptr<AmqpConnection> RabbitMqBroker::open(const std::string& name, std::chrono::milliseconds timeout)
{
    const std::size_t first = preferred_.load();
    for (std::size_t i = 0;; ++i) {
        const std::size_t at = (first + i) % nodes_.size();
        try {
            auto c = timeout.count() > 0 ? std::make_unique<AmqpConnection>(nodes_[at], heartbeat_, name, timeout)
                                         : std::make_unique<AmqpConnection>(nodes_[at], heartbeat_, name);
            if (at != first % nodes_.size()) {
                preferred_ = at;
                logLine(log_, Poco::Message::PRIO_NOTICE,
                        "RabbitMQ node " + nodes_[first % nodes_.size()].redacted() + " did not answer; " + name +
                            " connected to " + nodes_[at].redacted());
            }
            return c;
        } catch (const std::exception&) {
            if (i + 1 >= nodes_.size()) throw;  // none answered: the last one's reason
        }
    }
}

std::unique_ptr<AmqpConnection> RabbitMqBroker::connect(const std::string& role)
{
    auto c = open("orderpayd " + role, std::chrono::milliseconds(0));
    declareTopology(*c);
    return c;
}

void RabbitMqBroker::declareTopology(AmqpConnection& c)
{
    const std::string work = prefix_ + "work";
    const std::string dead = prefix_ + "dead";
    const bool quorum = queueType_ == "quorum";
    c.declareExchange(work, "direct");
    c.declareExchange(dead, "direct");
    // Quorum queues (replicated on a majority of the cluster's nodes) for
    // every queue, the delay queues' included: a message confirmed to the
    // relay survives the loss of any one node. Their dead-lettering is
    // at-least-once (RabbitMQ's default for quorum queues drops what a
    // node loss interrupts), which asks for overflow by refusing publishes.
    const std::map<std::string, std::string> quorumText =
        quorum ? std::map<std::string, std::string>{{"x-queue-type", "quorum"}} : std::map<std::string, std::string>{};
    auto dlx = [&](std::map<std::string, std::string> text) {
        if (quorum) {
            text["x-dead-letter-strategy"] = "at-least-once";
            text["x-overflow"] = "reject-publish";
        }
        return text;
    };
    for (const auto& queue : kQueues) {
        std::map<std::string, std::string> text = quorumText;
        text["x-dead-letter-exchange"] = dead;
        std::map<std::string, std::int64_t> ints;
        // The store counts every delivery and dead-letters at
        // retry.max_attempts; RabbitMQ's own count of returned deliveries
        // (a consumer's connection lost) is the backstop at the same
        // number, so a message no instance manages to count still ends in
        // the dead-letter queue, never loops.
        if (quorum) ints["x-delivery-limit"] = maxAttempts_;
        c.declareQueue(queueName(queue), dlx(text), ints);
        c.bind(queueName(queue), work, queue);
        c.declareQueue(queueName(queue) + ".dead", quorumText, {});
        c.bind(queueName(queue) + ".dead", dead, queue);
        // One delay queue per attempt keeps each queue's TTL uniform, so a
        // long delay never holds up a short one behind it.
        for (int n = 1; n < maxAttempts_; ++n) {
            const auto delay = std::min<std::chrono::milliseconds>(backoffBase_ * (1LL << std::min(n - 1, 20)),
                                                                   std::chrono::minutes(5));
            std::map<std::string, std::string> retryText = quorumText;
            retryText["x-dead-letter-exchange"] = work;
            retryText["x-dead-letter-routing-key"] = queue;
            c.declareQueue(queueName(queue) + ".retry." + std::to_string(n), dlx(retryText),
                           {{"x-message-ttl", delay.count()}});
        }
    }
}

void RabbitMqBroker::setRelayConnected(bool connected, const std::string& why)
{
    // Log transitions, not attempts; the first outcome is a transition too.
    const bool first = !relayKnown_.exchange(true);
    const bool was = relayConnected_.exchange(connected);
    if (connected) answeredAt_ = clock::steadyMillis();
    if (!first && was == connected) return;
    if (connected) {
        logLine(log_, Poco::Message::PRIO_NOTICE, "connected to RabbitMQ at " + node().redacted());
    } else {
        logLine(log_, Poco::Message::PRIO_ERROR,
                "RabbitMQ unavailable: " + why + "; requests are still accepted and wait in the outbox");
    }
}

std::chrono::milliseconds RabbitMqBroker::nextBackoff(std::chrono::milliseconds current)
{
    thread_local std::mt19937 rng{std::random_device{}()};
    const auto doubled = current.count() == 0 ? std::chrono::milliseconds(200) : current * 2;
    const auto capped = std::min(doubled, kMaxReconnectDelay);
    // Jitter: daemons that lost the broker together do not return together.
    std::uniform_int_distribution<long> jitter(0, capped.count() / 4);
    return capped + std::chrono::milliseconds(jitter(rng));
}

void RabbitMqBroker::relayLoop()
{
    std::unique_ptr<AmqpConnection> c;
    std::chrono::milliseconds backoff{0};
    bool everConnected = false;
    while (!stopping_) {
        if (!c) {
            try {
                c = connect("relay");
                c->enableConfirms();
                if (everConnected) Metrics::instance().brokerReconnects.fetch_add(1);
                everConnected = true;
                backoff = std::chrono::milliseconds(0);
                setRelayConnected(true, "");
            } catch (const std::exception& e) {
                c.reset();
                setRelayConnected(false, e.what());
                backoff = nextBackoff(backoff);
                std::unique_lock lock(relayMutex_);
                relayWake_.wait_for(lock, backoff, [&] { return stopping_.load(); });
                continue;
            }
        }
        try {
            if (relayOnce(*c)) continue;  // more waiting
        } catch (const AmqpError& e) {
            c.reset();
            setRelayConnected(false, e.what());
            continue;
        } catch (const StoreUnavailable&) {
            // The database refuses writes: the store logs that once, not the
            // relay every second. The messages wait in the outbox meanwhile.
        } catch (const std::exception& e) {
            logLine(log_, Poco::Message::PRIO_WARNING, std::string("outbox relay: ") + e.what());
        }
        // Idle: wait for a publish, servicing the connection meanwhile so a
        // broker that went away is noticed (and reported) without traffic.
        // Timers come due without a publish: look again after kRelayIdle.
        const auto idleUntil = std::chrono::steady_clock::now() + kRelayIdle;
        bool woken = false;
        while (!woken && !stopping_ && std::chrono::steady_clock::now() < idleUntil) {
            {
                std::unique_lock lock(relayMutex_);
                woken = relayWake_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stopping_ || pending_; });
                pending_ = false;
            }
            if (woken) break;
            try {
                c->poll(std::chrono::milliseconds(0));
            } catch (const AmqpError& e) {
                c.reset();
                setRelayConnected(false, e.what());
                break;
            }
        }
    }
}

bool RabbitMqBroker::relayOnce(AmqpConnection& c)
{
    const auto claimed = outbox_.claim(kRelayBatch, claimTime_);
    if (claimed.empty()) return false;
    std::vector<std::int64_t> ids;
    ids.reserve(claimed.size());
    for (const auto& m : claimed) ids.push_back(m.id);
    try {
        std::uint64_t last = 0;
        for (const auto& m : claimed) {
            // A first publication goes to the work exchange; retries and dead
            // letters name their own target (see retry() and deadLetter()).
            const std::string exchange = m.exchange.empty() ? prefix_ + "work" : m.exchange == "-" ? "" : m.exchange;
            last = c.publish(exchange, m.routingKey.empty() ? m.queue : m.routingKey, m.body,
                             std::to_string(m.messageId), m.headers);
        }
        c.waitForConfirms(last, kConfirmTimeout);
    } catch (...) {
        // Not confirmed: give the rows back for the next attempt.
        try {
            outbox_.unclaim(ids);
        } catch (const std::exception&) {
            // The claim runs out by itself after broker.lease.
        }
        throw;
    }
    outbox_.remove(ids);
    answeredAt_ = clock::steadyMillis();
    return claimed.size() == kRelayBatch;
}

void RabbitMqBroker::notifyPublished(const std::string&)
{
    {
        std::lock_guard lock(relayMutex_);
        pending_ = true;
    }
    relayWake_.notify_all();
}

std::string RabbitMqBroker::Consumer::describe() const
{
    std::string names;
    for (const auto& q : queues) names += (names.empty() ? "" : ", ") + q;
    return "consumer of " + names;
}

RabbitMqBroker::Consumer& RabbitMqBroker::consumerForThisThread(const std::string& queue)
{
    std::lock_guard lock(consumersMutex_);
    auto& slot = consumers_[std::this_thread::get_id()];
    if (!slot) slot = std::make_unique<Consumer>();
    slot->queues.insert(queue);
    return *slot;
}

void RabbitMqBroker::dropConsumer(Consumer& consumer, const std::string& why)
{
    // Logged when a working connection is lost, not for each failed
    // reconnect attempt after it (the relay logs the outage once).
    if (consumer.connection) {
        logLine(log_, Poco::Message::PRIO_WARNING, consumer.describe() + " lost its connection: " + why);
    }
    // Closing the connection hands back whatever it held, uncounted.
    consumer.connection.reset();
    consumer.consuming.clear();
    consumer.held.clear();
    consumer.backoff = nextBackoff(consumer.backoff);
    consumer.retryAt = std::chrono::steady_clock::now() + consumer.backoff;
}

void RabbitMqBroker::recordDeliveries(std::vector<Delivery>& ds)
{
    // A message without our id cannot be counted; it is handled once and,
    // being foreign, most likely dead-lettered as poison.
    std::vector<std::int64_t> ids;
    ids.reserve(ds.size());
    for (const auto& d : ds) ids.push_back(d.messageId);
    const auto attempts = outbox_.countDeliveries(ids);
    for (std::size_t i = 0; i < ds.size(); ++i) ds[i].attempt = attempts[i];
}

bool RabbitMqBroker::ensureConsuming(Consumer& c, std::chrono::milliseconds timeout)
{
    if (!c.connection) {
        const auto now = std::chrono::steady_clock::now();
        if (now < c.retryAt) {
            std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(c.retryAt - now, timeout));
            return false;
        }
    }
    if (c.waitingForStore) {
        // Consuming again before the database counts deliveries would
        // only take messages to hand back (each return counts toward a
        // quorum queue's delivery limit): an empty count probes it.
        try {
            outbox_.countDeliveries({});
        } catch (const std::exception&) {
            std::this_thread::sleep_for(std::min(timeout, std::chrono::milliseconds(200)));
            return false;
        }
        c.waitingForStore = false;
        logLine(log_, Poco::Message::PRIO_NOTICE, c.describe() + ": the database counts deliveries again");
    }
    try {
        if (!c.connection) c.connection = connect(c.describe());
        for (const auto& queue : c.queues) {
            if (c.consuming.count(queue) != 0) continue;
            c.connection->consume(queueName(queue), static_cast<std::uint16_t>(prefetch_), queue);
            c.consuming.insert(queue);
        }
        if (c.backoff.count() > 0) {
            Metrics::instance().brokerReconnects.fetch_add(1);
            logLine(log_, Poco::Message::PRIO_NOTICE, c.describe() + " reconnected");
        }
        c.backoff = std::chrono::milliseconds(0);
        return true;
    } catch (const AmqpError& e) {
        dropConsumer(c, e.what());
        return false;
    }
}

std::vector<Delivery> RabbitMqBroker::fetchSome(const std::string& queue, std::size_t max,
                                                std::chrono::milliseconds timeout)
{
    std::vector<Delivery> ds;
    if (stopping_) return ds;
    Consumer& c = consumerForThisThread(queue);
    if (!ensureConsuming(c, timeout)) return ds;
    // First what came in for this queue while another was asked for; then
    // the first new message waits up to `timeout`, the rest of the batch is
    // what the prefetch has already brought in. Messages for the thread's
    // other queues are held for when it asks for them.
    std::vector<bool> redelivered;
    auto& mine = c.held[queue];
    while (!mine.empty() && ds.size() < max) {
        ds.push_back(std::move(mine.front().delivery));
        redelivered.push_back(mine.front().redelivered);
        mine.pop_front();
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    try {
        while (ds.size() < max) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            std::optional<Envelope> envelope =
                c.connection->next(ds.empty() ? std::max(left, std::chrono::milliseconds(0)) : std::chrono::milliseconds(0));
            if (!envelope) break;
            Poco::Int64 id = 0;
            if (!Poco::NumberParser::tryParse64(envelope->messageId(), id) || id <= 0) id = 0;
            std::string tag = envelope->consumerTag();
            if (c.queues.count(tag) == 0) tag = queue;
            Delivery d{tag, envelope->body(), id, static_cast<std::int64_t>(envelope->deliveryTag()), 1};
            if (tag == queue) {
                ds.push_back(std::move(d));
                redelivered.push_back(envelope->redelivered());
            } else {
                c.held[tag].push_back(Held{std::move(d), envelope->redelivered()});
            }
        }
    } catch (const AmqpError& e) {
        // Closing the connection hands back what it had delivered, uncounted.
        dropConsumer(c, e.what());
        return {};
    }
    if (ds.empty()) return ds;
    try {
        recordDeliveries(ds);
        c.storeLostAt.reset();
    } catch (const StoreUnavailable&) {
        // The database does not take the count, so nothing is handed out.
        // The messages stay with this consumer, unacked (a return would
        // count toward a quorum queue's delivery limit), while the database
        // may come back at once; past holdFor_ they go back to the queue for
        // the instances that reach it, and this consumer waits for the
        // database before it takes any again.
        auto& mine = c.held[queue];
        for (std::size_t i = ds.size(); i-- > 0;) mine.push_front(Held{std::move(ds[i]), redelivered[i]});
        const auto now = std::chrono::steady_clock::now();
        if (!c.storeLostAt) c.storeLostAt = now;
        if (now - *c.storeLostAt >= holdFor_) {
            dropConsumer(c, "the database is unreachable; what it held goes back to the queue");
            c.waitingForStore = true;
            c.storeLostAt.reset();
        } else {
            std::this_thread::sleep_for(std::min(timeout, std::chrono::milliseconds(100)));
        }
        return {};
    } catch (...) {
        // Not counted, so not handed out: back to the queue.
        try {
            for (const auto& d : ds) c.connection->reject(static_cast<std::uint64_t>(d.lease), true);
        } catch (const AmqpError& e) {
            dropConsumer(c, e.what());
        }
        throw;
    }
    for (std::size_t i = 0; i < ds.size(); ++i)
        if (ds[i].redelivered() || redelivered[i]) Metrics::instance().redeliveries.fetch_add(1);
    return ds;
}

void RabbitMqBroker::ack(const Delivery& d)
{
    Consumer& c = consumerForThisThread(d.queue);
    if (!c.connection) throw AmqpError("cannot ack: the consumer connection was lost; the message will be redelivered");
    try {
        c.connection->ack(static_cast<std::uint64_t>(d.lease));
    } catch (const AmqpError& e) {
        dropConsumer(c, e.what());
        throw;
    }
    outbox_.forgetDeliveries(d.messageId);
}

void RabbitMqBroker::requeueThroughOutbox(const Delivery& d, const std::string& exchange,
                                          const std::string& routingKey,
                                          const std::map<std::string, std::string>& headers)
{
    // The copy is committed to the outbox before the original is acked, so
    // a crash in between yields a duplicate (harmless: handlers are
    // idempotent), never a loss. The relay publishes it with confirms.
    outbox_.add(OutboxMessage{0, d.queue, d.body, exchange, routingKey, headers, d.messageId});
    notifyPublished(d.queue);
    ackOriginal(d);
}

void RabbitMqBroker::ackOriginal(const Delivery& d)
{
    Consumer& c = consumerForThisThread(d.queue);
    if (!c.connection) return;  // the original comes back on its own; the copy dedupes
    try {
        c.connection->ack(static_cast<std::uint64_t>(d.lease));
    } catch (const AmqpError& e) {
        dropConsumer(c, e.what());
    }
}

void RabbitMqBroker::retry(const Delivery& d, const std::string& reason)
{
    const int level = std::clamp(d.attempt, 1, std::max(1, maxAttempts_ - 1));
    // "-" is the default exchange: straight to the delay queue of this attempt.
    requeueThroughOutbox(d, "-", queueName(d.queue) + ".retry." + std::to_string(level),
                         {{"x-orderpay-reason", reason}});
}

void RabbitMqBroker::deadLetter(const Delivery& d, const std::string& reason)
{
    // Kept in the database, where the operator routes list and replay
    // it, before the original is acked: a crash in between delivers it
    // again, and it dies again (its order is failed already).
    outbox_.deadLetter(OutboxMessage{0, d.queue, d.body, {}, {}, {}, d.messageId}, d.attempt, reason);
    ackOriginal(d);
    Metrics::instance().deadLetters.fetch_add(1);
    outbox_.forgetDeliveries(d.messageId);
}

void RabbitMqBroker::release(const Delivery& d)
{
    Consumer& c = consumerForThisThread(d.queue);
    if (c.connection) {
        try {
            c.connection->reject(static_cast<std::uint64_t>(d.lease), true);
        } catch (const AmqpError& e) {
            dropConsumer(c, e.what());  // closing the connection requeues it too
        }
    }
    outbox_.uncountDelivery(d.messageId);
}

void RabbitMqBroker::lookAtQueues()
{
    QueueDepths fresh;
    try {
        // Messages not yet published wait in the outbox: they count as ready.
        fresh = outbox_.pending();
    } catch (const std::exception&) {
        return;  // the last depths stand; the store logs what keeps it from reading
    }
    try {
        if (!inspector_) inspector_ = open("orderpayd monitor", kInspectTimeout);
        for (const auto& q : kQueues) {
            QueueDepth& d = fresh[q];
            d.ready += inspector_->messageCount(queueName(q));
            for (int n = 1; n < maxAttempts_; ++n)
                d.ready += inspector_->messageCount(queueName(q) + ".retry." + std::to_string(n));
            // Dead letters are kept in the database (pending() counted
            // them); the dead queue holds only what RabbitMQ dead-lettered
            // itself (x-delivery-limit) or an older release put there.
            d.dead += inspector_->messageCount(queueName(q) + ".dead");
        }
        answeredAt_ = clock::steadyMillis();
    } catch (const AmqpError&) {
        // Not answering, or gone: status() tells by the age of the last
        // answer, and the relay logs the outage.
        // The last depths stand.
        inspector_.reset();
        return;
    }
    std::lock_guard lock(statusMutex_);
    depths_ = std::move(fresh);
}

BrokerStatus RabbitMqBroker::status() const
{
    BrokerStatus s;
    {
        std::lock_guard lock(statusMutex_);
        s.depths = depths_;
    }
    const auto silentFor = std::chrono::milliseconds(clock::steadyMillis() - answeredAt_.load());
    if (!relayConnected_) s.state = BrokerStatus::State::Disconnected;
    else if (silentFor > BrokerStatus::kUnresponsiveAfter) s.state = BrokerStatus::State::Unresponsive;
    else s.state = BrokerStatus::State::Ok;
    return s;
}

}  // namespace orderpay
