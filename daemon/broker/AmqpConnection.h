#pragma once

#include "domain/Errors.h"

#include <amqp.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace orderpay {

/// Anything that went wrong talking to RabbitMQ. All of it is transient
/// for orderpay (the broker comes back); the message says what happened
/// in words an operator can act on.
class AmqpError : public TransientError {
public:
    using TransientError::TransientError;
};

/// amqp://user:password@host:port/vhost, parsed by rabbitmq-c.
struct AmqpUri {
    std::string user = "guest";
    std::string password = "guest";
    std::string host = "127.0.0.1";
    int port = 5672;
    std::string vhost = "/";
    bool tls = false;      // amqps://
    std::string caFile;    // CA bundle that must have signed the broker's certificate (amqps)

    /// Throws std::invalid_argument naming what is wrong (never the password).
    static AmqpUri parse(const std::string& uri);
    /// The nodes of a cluster: URIs separated by commas, each with its
    /// credentials, all naming the same vhost. Throws std::invalid_argument
    /// naming the URI's position when one is wrong.
    static std::vector<AmqpUri> parseList(const std::string& uris);
    /// The URI with the password replaced by "***": the only form that is logged.
    std::string redacted() const;
};

/// One message received by a consumer; owns rabbitmq-c's envelope.
class Envelope {
public:
    explicit Envelope(amqp_envelope_t e) : e_(e) {}
    ~Envelope() { amqp_destroy_envelope(&e_); }
    Envelope(const Envelope&) = delete;
    Envelope& operator=(const Envelope&) = delete;

    std::uint64_t deliveryTag() const { return e_.delivery_tag; }
    bool redelivered() const { return e_.redelivered != 0; }
    std::string body() const;
    std::string messageId() const;
    /// The tag of the consumer it was delivered to.
    std::string consumerTag() const;

private:
    amqp_envelope_t e_;
};

/// One AMQP connection with one channel (channel 1), owned by one thread:
/// rabbitmq-c connections are not thread-safe. Every rabbitmq-c status and
/// RPC reply is checked here and turned into an AmqpError; after an error
/// the connection is unusable and is thrown away by its owner.
class AmqpConnection {
public:
    /// Connects, logs in and opens the channel. `timeout` bounds the TCP
    /// connect, the login handshake and every RPC after it: nothing waits
    /// longer on a broker that stopped answering.
    AmqpConnection(const AmqpUri& uri, std::chrono::seconds heartbeat, const std::string& name,
                   std::chrono::milliseconds timeout = std::chrono::seconds(10));
    ~AmqpConnection();
    AmqpConnection(const AmqpConnection&) = delete;
    AmqpConnection& operator=(const AmqpConnection&) = delete;

    void declareExchange(const std::string& name, const std::string& type);
    /// Declares a durable queue; `arguments` are string or integer x-args.
    void declareQueue(const std::string& name, const std::map<std::string, std::string>& textArgs,
                      const std::map<std::string, std::int64_t>& intArgs);
    /// Messages ready in a queue (a passive declare).
    std::uint32_t messageCount(const std::string& queue);
    void bind(const std::string& queue, const std::string& exchange, const std::string& routingKey);

    /// Publisher confirms on this channel; publish() then returns the
    /// sequence number that waitForConfirms() waits for.
    void enableConfirms();
    std::uint64_t publish(const std::string& exchange, const std::string& routingKey, const std::string& body,
                          const std::string& messageId, const std::map<std::string, std::string>& headers = {});
    /// Blocks until the broker confirmed every publish up to `sequence`.
    /// Throws if one was nacked or returned, or on timeout.
    void waitForConfirms(std::uint64_t sequence, std::chrono::milliseconds timeout);

    /// Services the connection for up to `timeout` when nothing else is
    /// being read: heartbeats, and noticing that the broker closed it.
    void poll(std::chrono::milliseconds timeout);

    /// Starts a consumer of `queue` with its own prefetch, tagged `tag`
    /// (empty: the broker names it); a connection may run several.
    void consume(const std::string& queue, std::uint16_t prefetch, const std::string& tag = {});
    /// The next delivery, or nothing after `timeout`. Services heartbeats.
    std::optional<Envelope> next(std::chrono::milliseconds timeout);
    void ack(std::uint64_t deliveryTag);
    void reject(std::uint64_t deliveryTag, bool requeue);

private:
    void checkReply(const amqp_rpc_reply_t& reply, const std::string& what);
    void checkStatus(int status, const std::string& what);
    [[noreturn]] void fail(const std::string& what, const std::string& why);

    amqp_connection_state_t conn_ = nullptr;
    std::string name_;
    std::string endpoint_;
    bool open_ = false;
    std::uint64_t published_ = 0;        // publish sequence number, with confirms on
    std::set<std::uint64_t> unconfirmed_;  // published, neither acked nor nacked yet
};

}  // namespace orderpay
