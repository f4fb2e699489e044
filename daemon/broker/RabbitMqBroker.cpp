#include "broker/RabbitMqBroker.h"

#include "domain/Clock.h"
#include "domain/Errors.h"
#include "logging/Log.h"
#include "metrics/Metrics.h"
#include "store/JsonText.h"
#include "store/OrderStore.h"

#include <Poco/Data/Statement.h>
#include <Poco/Exception.h>
#include <Poco/NumberParser.h>


#include <random>
#include <pthread.h>

using namespace Poco::Data::Keywords;
using Poco::Data::Session;
using Poco::Data::Statement;

namespace orderpay {
namespace {

constexpr std::chrono::milliseconds kConfirmTimeout{10000};
constexpr std::chrono::milliseconds kMaxReconnectDelay{30000};
constexpr int kRelayBatch = 256;
/// A claimed outbox row whose relay died is published again after this.
constexpr std::int64_t kClaimMillis = 10000;
const std::vector<std::string> kQueues = {kOrdersQueue, kPaymentsQueue};

std::map<std::string, std::string> decodeHeaders(const std::string& text)
{
    if (text.empty()) return {};
    try {
        return stringMapFromJson(text);
    } catch (const Poco::Exception&) {
        return {};  // written by stringMapToJson only; an unreadable one is dropped, not fatal
    }
}

/// A worker's batch is at most what the broker has handed over and not yet
/// had acked. With instant processing (batches of WorkSettings::batchSize)
/// a smaller prefetch had each worker wait for the broker between batches
/// of the shipped 10: 20,000 orders end to end took 12.8 s, and 7.2 s with
/// 64 (two batches of 32 then; issue 7). Otherwise a worker takes one message at a
/// time, and the operator's prefetch stands as it is.
int prefetchFor(int configured, const WorkSettings& work)
{
    if (work.batchSize() <= 1) return configured;
    return std::max(configured, static_cast<int>(2 * work.batchSize()));
}

}  // namespace

RabbitMqBroker::RabbitMqBroker(Database& db, Committer& committer, const BrokerSettings& broker,
                               const WorkSettings& work)
    : db_(db),
      committer_(committer),
      uri_(AmqpUri::parse(broker.rabbitmqUri)),
      prefix_(broker.rabbitmqPrefix),
      prefetch_(prefetchFor(broker.rabbitmqPrefetch, work)),
      queueType_(broker.rabbitmqQueueType),
      backoffBase_(std::max(work.retryBackoff, std::chrono::milliseconds(1))),
      maxAttempts_(work.maxAttempts),
      // A consumer busy with one order does not call into rabbitmq-c until
      // it acks; the heartbeat interval leaves room for a whole order.
      heartbeat_(std::max<std::chrono::seconds>(
          std::chrono::seconds(30),
          std::chrono::duration_cast<std::chrono::seconds>(work.processingTime * 2) + std::chrono::seconds(10))),
      log_(Poco::Logger::get("orderpay.broker"))
{
    uri_.caFile = broker.rabbitmqCaFile;
}

RabbitMqBroker::~RabbitMqBroker() { stop(); }

void RabbitMqBroker::start()
{
    stopping_ = false;
    relay_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "amqp-relay");
        relayLoop();
    });
}

void RabbitMqBroker::stop()
{
    stopping_ = true;
    relayWake_.notify_all();
    if (relay_.joinable()) relay_.join();
    // Consumer connections are closed with the broker object, after the
    // worker threads that own them have ended.
}

std::unique_ptr<AmqpConnection> RabbitMqBroker::connect(const std::string& role)
{
    auto c = std::make_unique<AmqpConnection>(uri_, heartbeat_, "orderpayd " + role);
    declareTopology(*c);
    return c;
}

void RabbitMqBroker::declareTopology(AmqpConnection& c)
{
    const std::string work = prefix_ + "work";
    const std::string dead = prefix_ + "dead";
    c.declareExchange(work, "direct");
    c.declareExchange(dead, "direct");
    for (const auto& queue : kQueues) {
        std::map<std::string, std::string> args{{"x-dead-letter-exchange", dead}};
        if (queueType_ == "quorum") args["x-queue-type"] = "quorum";
        c.declareQueue(queueName(queue), args, {});
        c.bind(queueName(queue), work, queue);
        c.declareQueue(queueName(queue) + ".dead", queueType_ == "quorum" ? std::map<std::string, std::string>{{"x-queue-type", "quorum"}} : std::map<std::string, std::string>{}, {});
        c.bind(queueName(queue) + ".dead", dead, queue);
        // One delay queue per attempt keeps each queue's TTL uniform, so a
        // long delay never holds up a short one behind it.
        for (int n = 1; n < maxAttempts_; ++n) {
            const auto delay = std::min<std::chrono::milliseconds>(backoffBase_ * (1LL << std::min(n - 1, 20)),
                                                                   std::chrono::minutes(5));
            c.declareQueue(queueName(queue) + ".retry." + std::to_string(n),
                           {{"x-dead-letter-exchange", work}, {"x-dead-letter-routing-key", queue}},
                           {{"x-message-ttl", delay.count()}});
        }
    }
}

void RabbitMqBroker::setRelayConnected(bool connected, const std::string& why)
{
    // Log transitions, not attempts; the first outcome is a transition too.
    const bool first = !relayKnown_.exchange(true);
    const bool was = relayConnected_.exchange(connected);
    if (!first && was == connected) return;
    if (connected) {
        logLine(log_, Poco::Message::PRIO_NOTICE, "connected to RabbitMQ at " + uri_.redacted());
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
        const auto idleUntil = std::chrono::steady_clock::now() + std::chrono::seconds(1);
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
    std::vector<std::int64_t> ids, messageIds;
    std::vector<std::string> bodies, exchanges, routingKeys, headers;
    // Prepared once on the writer's connection (sql::Statements): the relay
    // runs these for every message.
    static const std::string claimable =
        "SELECT id, body, COALESCE(exchange, ''), COALESCE(routing_key, queue), COALESCE(headers, ''), "
        "COALESCE(message_id, id) FROM messages "
        "WHERE state = 'ready' OR (state = 'publishing' AND due_at <= ?) ORDER BY id LIMIT " +
        std::to_string(kRelayBatch);
    committer_.write([&](Session&) {
        for (auto* v : {&bodies, &exchanges, &routingKeys, &headers}) v->clear();
        ids.clear();
        messageIds.clear();
        sql::Statements& w = db_.writes();
        const std::int64_t at = clock::nowMillis();
        const std::int64_t until = at + kClaimMillis;
        w(claimable).query(
            [&](sql::Statement& row) {
                ids.push_back(row.integer(0));
                bodies.push_back(row.text(1));
                exchanges.push_back(row.text(2));
                routingKeys.push_back(row.text(3));
                headers.push_back(row.text(4));
                messageIds.push_back(row.integer(5));
            },
            at);
        for (auto id : ids) w("UPDATE messages SET state = 'publishing', due_at = ? WHERE id = ?").exec(until, id);
    });
    if (ids.empty()) return false;

    try {
        std::uint64_t last = 0;
        for (std::size_t i = 0; i < ids.size(); ++i) {
            // A first publication goes to the work exchange; retries and dead
            // letters name their own target (see retry() and deadLetter()).
            const std::string exchange = exchanges[i].empty() ? prefix_ + "work" : exchanges[i];
            const std::string exchangeName = exchanges[i] == "-" ? std::string() : exchange;
            last = c.publish(exchangeName, routingKeys[i], bodies[i], std::to_string(messageIds[i]),
                             decodeHeaders(headers[i]));
        }
        c.waitForConfirms(last, kConfirmTimeout);
    } catch (...) {
        // Not confirmed: give the rows back for the next attempt.
        try {
            committer_.write([&](Session&) {
                for (auto id : ids) db_.writes()("UPDATE messages SET state = 'ready' WHERE id = ?").exec(id);
            });
        } catch (const std::exception&) {
            // The claim runs out by itself after kClaimMillis.
        }
        throw;
    }
    committer_.write([&](Session&) {
        for (auto id : ids) db_.writes()("DELETE FROM messages WHERE id = ?").exec(id);
    });
    return static_cast<int>(ids.size()) == kRelayBatch;
}

void RabbitMqBroker::notifyPublished(const std::string&)
{
    {
        std::lock_guard lock(relayMutex_);
        pending_ = true;
    }
    relayWake_.notify_all();
}

RabbitMqBroker::Consumer& RabbitMqBroker::consumerForThisThread(const std::string& queue)
{
    std::lock_guard lock(consumersMutex_);
    auto& slot = consumers_[std::this_thread::get_id()];
    if (!slot) {
        slot = std::make_unique<Consumer>();
        slot->queue = queue;
    }
    return *slot;
}

void RabbitMqBroker::dropConsumer(Consumer& consumer, const std::string& why)
{
    // Logged when a working connection is lost, not for each failed
    // reconnect attempt after it (the relay logs the outage once).
    if (consumer.connection) {
        logLine(log_, Poco::Message::PRIO_WARNING, "consumer of " + consumer.queue + " lost its connection: " + why,
                {{"QUEUE", consumer.queue}});
    }
    consumer.connection.reset();
    consumer.backoff = nextBackoff(consumer.backoff);
    consumer.retryAt = std::chrono::steady_clock::now() + consumer.backoff;
}

void RabbitMqBroker::recordDeliveries(std::vector<Delivery>& ds)
{
    std::vector<int> attempts(ds.size(), 1);
    committer_.write([&](Session&) {
        auto& upsert = db_.writes()(
            "INSERT INTO deliveries (message_id, attempts, last_at) VALUES (?, 1, ?) "
            "ON CONFLICT (message_id) DO UPDATE SET attempts = attempts + 1, last_at = excluded.last_at "
            "RETURNING attempts");
        const std::int64_t at = clock::nowMillis();
        for (std::size_t i = 0; i < ds.size(); ++i) {
            // A message without our id cannot be counted; it is handled once
            // and, being foreign, most likely dead-lettered as poison.
            if (ds[i].messageId <= 0) continue;
            upsert.query([&](const sql::Statement& row) { attempts[i] = static_cast<int>(row.integer(0)); },
                         ds[i].messageId, at);
        }
    });
    for (std::size_t i = 0; i < ds.size(); ++i) ds[i].attempt = attempts[i];
}

void RabbitMqBroker::forgetDelivery(std::int64_t messageId)
{
    if (messageId <= 0) return;
    // Losing this delete in a crash leaves a count nothing reads again (the
    // message is settled), so it rides along with the next transaction.
    committer_.post([this, messageId](Session&) {
        db_.writes()("DELETE FROM deliveries WHERE message_id = ?").exec(messageId);
    });
}

bool RabbitMqBroker::ensureConsuming(Consumer& c, const std::string& queue, std::chrono::milliseconds timeout)
{
    if (c.connection) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now < c.retryAt) {
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(c.retryAt - now, timeout));
        return false;
    }
    try {
        auto fresh = connect("consumer " + queue);
        fresh->consume(queueName(queue), static_cast<std::uint16_t>(prefetch_));
        c.connection = std::move(fresh);
        if (c.backoff.count() > 0) {
            Metrics::instance().brokerReconnects.fetch_add(1);
            logLine(log_, Poco::Message::PRIO_NOTICE, "consumer of " + queue + " reconnected", {{"QUEUE", queue}});
        }
        c.backoff = std::chrono::milliseconds(0);
        return true;
    } catch (const AmqpError& e) {
        dropConsumer(c, e.what());
        return false;
    }
}

std::optional<Delivery> RabbitMqBroker::fetch(const std::string& queue, std::chrono::milliseconds timeout)
{
    auto ds = fetchSome(queue, 1, timeout);
    if (ds.empty()) return std::nullopt;
    return std::move(ds.front());
}

std::vector<Delivery> RabbitMqBroker::fetchSome(const std::string& queue, std::size_t max,
                                                std::chrono::milliseconds timeout)
{
    std::vector<Delivery> ds;
    if (stopping_) return ds;
    Consumer& c = consumerForThisThread(queue);
    if (!ensureConsuming(c, queue, timeout)) return ds;
    // The first message waits up to `timeout`; the rest of the batch is
    // what the prefetch has already brought in.
    std::vector<bool> redelivered;
    try {
        for (auto wait = timeout; ds.size() < max; wait = std::chrono::milliseconds(0)) {
            std::optional<Envelope> envelope = c.connection->next(wait);
            if (!envelope) break;
            Poco::Int64 id = 0;
            if (!Poco::NumberParser::tryParse64(envelope->messageId(), id) || id <= 0) id = 0;
            ds.push_back(Delivery{queue, envelope->body(), id, static_cast<std::int64_t>(envelope->deliveryTag()), 1});
            redelivered.push_back(envelope->redelivered());
        }
    } catch (const AmqpError& e) {
        // Closing the connection hands back what it had delivered, uncounted.
        dropConsumer(c, e.what());
        return {};
    }
    if (ds.empty()) return ds;
    try {
        recordDeliveries(ds);
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
    forgetDelivery(d.messageId);
}

void RabbitMqBroker::requeueThroughOutbox(const Delivery& d, const std::string& exchange,
                                          const std::string& routingKey,
                                          const std::map<std::string, std::string>& headers)
{
    // The copy is committed to the outbox before the original is acked, so
    // a crash in between yields a duplicate (harmless: handlers are
    // idempotent), never a loss. The relay publishes it with confirms.
    committer_.write([&](Session& s) {
        const Poco::Int64 at = clock::nowMillis();
        const Poco::Int64 messageId = d.messageId;
        const std::string headerText = stringMapToJson(headers);
        s << "INSERT INTO messages (queue, body, state, attempts, lease, due_at, created_at, exchange, routing_key, "
             "headers, message_id) VALUES (?, ?, 'ready', 0, 0, ?, ?, ?, ?, ?, NULLIF(?, 0))",
            useRef(d.queue), useRef(d.body), useRef(at), useRef(at), useRef(exchange), useRef(routingKey),
            useRef(headerText), useRef(messageId), now;
    });
    notifyPublished(d.queue);
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
    requeueThroughOutbox(d, prefix_ + "dead", d.queue,
                         {{"x-orderpay-reason", reason}, {"x-orderpay-attempts", std::to_string(d.attempt)}});
    Metrics::instance().deadLetters.fetch_add(1);
    forgetDelivery(d.messageId);
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
    if (d.messageId > 0) {
        committer_.write([&](Session& s) {
            const Poco::Int64 id = d.messageId;
            s << "UPDATE deliveries SET attempts = MAX(attempts - 1, 0) WHERE message_id = ?", useRef(id), now;
        });
    }
}

std::map<std::string, QueueDepth> RabbitMqBroker::depths()
{
    std::map<std::string, QueueDepth> result;
    {
        // Messages not yet published wait in the outbox: they count as ready.
        Session s = db_.reader();
        std::vector<std::string> queues;
        std::vector<Poco::Int64> counts, oldest;
        s << "SELECT queue, COUNT(*), MIN(created_at) FROM messages WHERE state IN ('ready', 'publishing') GROUP BY queue",
            into(queues), into(counts), into(oldest), now;
        const std::int64_t at = clock::nowMillis();
        for (const auto& q : kQueues) result[q] = {};
        for (std::size_t i = 0; i < queues.size(); ++i) {
            result[queues[i]].ready = counts[i];
            result[queues[i]].oldestAgeMs = at - oldest[i];
        }
    }
    std::lock_guard lock(inspectMutex_);
    try {
        if (!inspector_) inspector_ = connect("inspector");
        for (const auto& q : kQueues) {
            QueueDepth& d = result[q];
            d.ready += inspector_->messageCount(queueName(q));
            for (int n = 1; n < maxAttempts_; ++n)
                d.ready += inspector_->messageCount(queueName(q) + ".retry." + std::to_string(n));
            d.dead = inspector_->messageCount(queueName(q) + ".dead");
        }
    } catch (const AmqpError&) {
        inspector_.reset();  // the relay reports the outage; the outbox numbers stand
    }
    return result;
}

}  // namespace orderpay
