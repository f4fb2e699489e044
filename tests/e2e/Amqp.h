// A minimal AMQP 0-9-1 client for the end-to-end tests, over rabbitmq-c:
// enough to put a message on a queue behind the daemon's back and to look
// into its queues. One connection, one channel; not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

struct amqp_connection_state_t_;

namespace e2e {

struct AmqpMessage {
    std::string body;
    std::map<std::string, std::string> headers;  // string and integer values, as text
    bool redelivered = false;
};

class AmqpClient {
public:
    // Connects to amqp://user:password@host:port/vhost and opens a channel.
    // Throws std::runtime_error (without the password) on failure.
    explicit AmqpClient(const std::string& uri, std::chrono::seconds timeout = std::chrono::seconds(10));
    ~AmqpClient();
    AmqpClient(const AmqpClient&) = delete;
    AmqpClient& operator=(const AmqpClient&) = delete;

    // Publishes a persistent message and waits for the broker's confirm.
    void publish(const std::string& exchange, const std::string& routingKey, const std::string& body,
                 const std::map<std::string, std::string>& headers = {});
    // Messages ready in `queue` (a passive queue.declare); nullopt if the
    // queue does not exist.
    std::optional<std::uint32_t> messageCount(const std::string& queue);
    // basic.get without acknowledging: the message stays unacknowledged on
    // this channel (later gets return the next ones) and goes back to the
    // queue when the client is destroyed. nullopt if the queue is empty.
    std::optional<AmqpMessage> get(const std::string& queue);

private:
    void openChannel();
    void check(const char* what);  // throws on a failed RPC reply

    amqp_connection_state_t_* conn_ = nullptr;
    std::uint16_t channel_ = 0;
    std::string where_;     // user@host:port/vhost, for messages
};

}  // namespace e2e
