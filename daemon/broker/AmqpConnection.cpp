#include "broker/AmqpConnection.h"

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <sys/time.h>
#include <utility>
#include <vector>

namespace orderpay {
namespace {

amqp_bytes_t bytes(const std::string& s) { return amqp_bytes_t{s.size(), const_cast<char*>(s.data())}; }

std::string text(amqp_bytes_t b) { return std::string(static_cast<const char*>(b.bytes), b.len); }

timeval toTimeval(std::chrono::milliseconds ms)
{
    return timeval{static_cast<time_t>(ms.count() / 1000), static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
}

/// What the server said when it closed the channel or connection.
std::string serverReason(const amqp_rpc_reply_t& reply)
{
    if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* m = static_cast<amqp_connection_close_t*>(reply.reply.decoded);
        return "the broker closed the connection: " + std::to_string(m->reply_code) + " " + text(m->reply_text);
    }
    if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* m = static_cast<amqp_channel_close_t*>(reply.reply.decoded);
        return "the broker closed the channel: " + std::to_string(m->reply_code) + " " + text(m->reply_text);
    }
    return "the broker answered with an unexpected method " + std::to_string(reply.reply.id);
}

}  // namespace

AmqpUri AmqpUri::parse(const std::string& uri)
{
    std::vector<char> buffer(uri.begin(), uri.end());
    buffer.push_back('\0');
    amqp_connection_info info{};
    amqp_default_connection_info(&info);
    if (amqp_parse_url(buffer.data(), &info) != AMQP_STATUS_OK) {
        throw std::invalid_argument("not an AMQP URI (expected amqp://user:password@host:port/vhost)");
    }
    AmqpUri u;
    u.user = info.user;
    u.password = info.password;
    u.host = info.host;
    u.port = info.port;
    // "amqp://host/" names no vhost: RabbitMQ's default one, "/".
    u.vhost = *info.vhost ? info.vhost : "/";
    u.tls = info.ssl != 0;
    return u;
}

std::vector<AmqpUri> AmqpUri::parseList(const std::string& uris)
{
    std::vector<AmqpUri> nodes;
    std::size_t start = 0;
    for (;;) {
        const std::size_t comma = uris.find(',', start);
        std::string one = uris.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        while (!one.empty() && one.front() == ' ') one.erase(0, 1);
        while (!one.empty() && one.back() == ' ') one.pop_back();
        try {
            nodes.push_back(parse(one));
        } catch (const std::invalid_argument& e) {
            if (comma == std::string::npos && nodes.empty()) throw;
            throw std::invalid_argument("URI " + std::to_string(nodes.size() + 1) + " of the list: " + e.what());
        }
        if (nodes.back().vhost != nodes.front().vhost)
            throw std::invalid_argument("URI " + std::to_string(nodes.size()) +
                                        " of the list names another vhost than the first: the nodes of one cluster "
                                        "share the vhost");
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return nodes;
}

std::string AmqpUri::redacted() const
{
    std::string vhostPart = vhost == "/" ? "" : vhost;
    return std::string(tls ? "amqps://" : "amqp://") + user + ":***@" + host + ":" + std::to_string(port) + "/" + vhostPart;
}

std::string Envelope::body() const { return text(e_.message.body); }

std::string Envelope::consumerTag() const { return text(e_.consumer_tag); }

std::string Envelope::messageId() const
{
    if (e_.message.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) return text(e_.message.properties.message_id);
    return {};
}

AmqpConnection::AmqpConnection(const AmqpUri& uri, std::chrono::seconds heartbeat, const std::string& name,
                               std::chrono::milliseconds timeout)
    : name_(name), endpoint_(uri.host + ":" + std::to_string(uri.port))
{
    conn_ = amqp_new_connection();
    if (!conn_) throw AmqpError("cannot allocate an AMQP connection");
    // The destructor does not run when the constructor throws, as every
    // failed connect does (RabbitMQ down, a wrong password): without this,
    // each reconnect attempt of an outage leaked a connection and its buffers.
    struct DestroyUnlessOpened {
        amqp_connection_state_t& conn;
        bool opened = false;
        ~DestroyUnlessOpened()
        {
            if (!opened) amqp_destroy_connection(std::exchange(conn, nullptr));
        }
    } guard{conn_};
    amqp_socket_t* socket = nullptr;
    if (uri.tls) {
        socket = amqp_ssl_socket_new(conn_);
        if (!socket) fail("connect", "cannot create a TLS socket");
        // The broker must prove it is the host named in the URI, signed by
        // the configured CA (or the system's).
        const std::string ca = uri.caFile.empty() ? "/etc/ssl/certs/ca-certificates.crt" : uri.caFile;
        checkStatus(amqp_ssl_socket_set_cacert(socket, ca.c_str()), "load the CA certificates from " + ca);
        amqp_ssl_socket_set_verify_peer(socket, 1);
        amqp_ssl_socket_set_verify_hostname(socket, 1);
    } else {
        socket = amqp_tcp_socket_new(conn_);
        if (!socket) fail("connect", "cannot create a TCP socket");
    }
    timeval connectTimeout = toTimeval(std::min<std::chrono::milliseconds>(timeout, std::chrono::seconds(5)));
    checkStatus(amqp_socket_open_noblock(socket, uri.host.c_str(), uri.port, &connectTimeout), "connect");
    // No RPC, the login's included, may block forever on a broker that
    // stopped answering (a frozen node still completes TCP connects).
    timeval rpcTimeout = toTimeval(timeout);
    checkStatus(amqp_set_handshake_timeout(conn_, &rpcTimeout), "set the login timeout");
    checkStatus(amqp_set_rpc_timeout(conn_, &rpcTimeout), "set the RPC timeout");
    // A literal, not a temporary std::string: the login below reads it.
    amqp_table_entry_t property{amqp_cstring_bytes("connection_name"), {}};
    property.value.kind = AMQP_FIELD_KIND_UTF8;
    property.value.value.bytes = bytes(name_);
    amqp_table_t properties{1, &property};
    checkReply(amqp_login_with_properties(conn_, uri.vhost.c_str(), 0, AMQP_DEFAULT_FRAME_SIZE,
                                          static_cast<int>(heartbeat.count()), &properties, AMQP_SASL_METHOD_PLAIN,
                                          uri.user.c_str(), uri.password.c_str()),
               "log in as " + uri.user + " to vhost " + uri.vhost);
    open_ = true;
    amqp_channel_open(conn_, 1);
    checkReply(amqp_get_rpc_reply(conn_), "open a channel");
    guard.opened = true;
}

AmqpConnection::~AmqpConnection()
{
    if (open_) {
        // A clean close tells the broker to requeue what this consumer held.
        amqp_channel_close(conn_, 1, AMQP_REPLY_SUCCESS);
        amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    }
    if (conn_) amqp_destroy_connection(conn_);
}

void AmqpConnection::fail(const std::string& what, const std::string& why)
{
    open_ = false;  // after any error the connection is not used again
    throw AmqpError("RabbitMQ at " + endpoint_ + ": cannot " + what + ": " + why);
}

void AmqpConnection::checkStatus(int status, const std::string& what)
{
    if (status == AMQP_STATUS_OK) return;
    std::string why = amqp_error_string2(status);
    if (status == AMQP_STATUS_SOCKET_ERROR || status == AMQP_STATUS_TCP_ERROR)
        why += " (is RabbitMQ running and reachable?)";
    if (status == AMQP_STATUS_SSL_ERROR || status == AMQP_STATUS_SSL_PEER_VERIFY_FAILED ||
        status == AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED || status == AMQP_STATUS_SSL_CONNECTION_FAILED)
        why += " (check broker.rabbitmq.ca_file and that the certificate names the URI's host)";
    fail(what, why);
}

void AmqpConnection::checkReply(const amqp_rpc_reply_t& reply, const std::string& what)
{
    switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL: return;
    case AMQP_RESPONSE_NONE: fail(what, "the broker sent no reply");
    case AMQP_RESPONSE_LIBRARY_EXCEPTION: {
        std::string why = amqp_error_string2(reply.library_error);
        if (reply.library_error == AMQP_STATUS_CONNECTION_CLOSED || reply.library_error == AMQP_STATUS_SOCKET_ERROR)
            why += " (the broker went away)";
        fail(what, why);
    }
    case AMQP_RESPONSE_SERVER_EXCEPTION: {
        std::string why = serverReason(reply);
        if (why.find("ACCESS_REFUSED") != std::string::npos || why.find("403") != std::string::npos)
            why += " (check the user, password and vhost of broker.rabbitmq.uri)";
        fail(what, why);
    }
    }
    fail(what, "unknown reply type");
}

void AmqpConnection::declareExchange(const std::string& name, const std::string& type)
{
    amqp_exchange_declare(conn_, 1, bytes(name), bytes(type), 0, 1, 0, 0, amqp_empty_table);
    checkReply(amqp_get_rpc_reply(conn_), "declare exchange " + name);
}

void AmqpConnection::declareQueue(const std::string& name, const std::map<std::string, std::string>& textArgs,
                                  const std::map<std::string, std::int64_t>& intArgs)
{
    std::vector<std::string> keys;  // keep key storage alive for the call
    std::vector<amqp_table_entry_t> entries;
    keys.reserve(textArgs.size() + intArgs.size());
    for (const auto& [k, v] : textArgs) {
        keys.push_back(k);
        amqp_table_entry_t e{bytes(keys.back()), {}};
        e.value.kind = AMQP_FIELD_KIND_UTF8;
        e.value.value.bytes = bytes(v);
        entries.push_back(e);
    }
    for (const auto& [k, v] : intArgs) {
        keys.push_back(k);
        amqp_table_entry_t e{bytes(keys.back()), {}};
        e.value.kind = AMQP_FIELD_KIND_I64;
        e.value.value.i64 = v;
        entries.push_back(e);
    }
    amqp_table_t table{static_cast<int>(entries.size()), entries.data()};
    amqp_queue_declare(conn_, 1, bytes(name), 0, 1, 0, 0, table);
    checkReply(amqp_get_rpc_reply(conn_), "declare queue " + name);
}

std::uint32_t AmqpConnection::messageCount(const std::string& queue)
{
    amqp_maybe_release_buffers(conn_);
    amqp_queue_declare_ok_t* ok = amqp_queue_declare(conn_, 1, bytes(queue), 1, 0, 0, 0, amqp_empty_table);
    checkReply(amqp_get_rpc_reply(conn_), "inspect queue " + queue);
    return ok ? ok->message_count : 0;
}

void AmqpConnection::bind(const std::string& queue, const std::string& exchange, const std::string& routingKey)
{
    amqp_queue_bind(conn_, 1, bytes(queue), bytes(exchange), bytes(routingKey), amqp_empty_table);
    checkReply(amqp_get_rpc_reply(conn_), "bind queue " + queue + " to " + exchange);
}

void AmqpConnection::enableConfirms()
{
    amqp_confirm_select(conn_, 1);
    checkReply(amqp_get_rpc_reply(conn_), "turn on publisher confirms");
    published_ = 0;
    unconfirmed_.clear();
}

std::uint64_t AmqpConnection::publish(const std::string& exchange, const std::string& routingKey,
                                      const std::string& body, const std::string& messageId,
                                      const std::map<std::string, std::string>& headers)
{
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
    props.delivery_mode = 2;  // persistent
    const std::string contentType = "application/json";
    props.content_type = bytes(contentType);
    props.message_id = bytes(messageId);
    std::vector<amqp_table_entry_t> entries;
    for (const auto& [k, v] : headers) {
        amqp_table_entry_t e{bytes(k), {}};
        e.value.kind = AMQP_FIELD_KIND_UTF8;
        e.value.value.bytes = bytes(v);
        entries.push_back(e);
    }
    if (!entries.empty()) {
        props._flags |= AMQP_BASIC_HEADERS_FLAG;
        props.headers = amqp_table_t{static_cast<int>(entries.size()), entries.data()};
    }
    // mandatory: a message no queue takes comes back instead of vanishing.
    checkStatus(amqp_basic_publish(conn_, 1, bytes(exchange), bytes(routingKey), 1, 0, &props, bytes(body)),
                "publish to " + exchange);
    unconfirmed_.insert(++published_);
    return published_;
}

void AmqpConnection::waitForConfirms(std::uint64_t sequence, std::chrono::milliseconds timeout)
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!unconfirmed_.empty() && *unconfirmed_.begin() <= sequence) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) fail("get publisher confirms", "no confirm within " + std::to_string(timeout.count()) + " ms");
        // Decoded frames live in the connection's pool until released; a
        // publisher that never releases grows by every confirm it reads.
        amqp_maybe_release_buffers(conn_);
        timeval tv = toTimeval(left);
        amqp_frame_t frame{};
        const int status = amqp_simple_wait_frame_noblock(conn_, &frame, &tv);
        if (status == AMQP_STATUS_TIMEOUT) continue;
        checkStatus(status, "get publisher confirms");
        if (frame.frame_type != AMQP_FRAME_METHOD) continue;
        switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
            const auto* ack = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
            if (ack->multiple) unconfirmed_.erase(unconfirmed_.begin(), unconfirmed_.upper_bound(ack->delivery_tag));
            else unconfirmed_.erase(ack->delivery_tag);
            break;
        }
        case AMQP_BASIC_NACK_METHOD: fail("publish", "the broker refused a message (basic.nack)");
        case AMQP_BASIC_RETURN_METHOD: {
            // A returned message is followed by its header and body; read them away.
            amqp_message_t returned{};
            amqp_read_message(conn_, frame.channel, &returned, 0);
            amqp_destroy_message(&returned);
            fail("publish", "no queue is bound for the message (basic.return); was the topology deleted?");
        }
        case AMQP_CHANNEL_CLOSE_METHOD: fail("publish", "the broker closed the channel");
        case AMQP_CONNECTION_CLOSE_METHOD: fail("publish", "the broker closed the connection");
        default: break;
        }
    }
}

void AmqpConnection::poll(std::chrono::milliseconds timeout)
{
    amqp_maybe_release_buffers(conn_);
    timeval tv = toTimeval(timeout);
    amqp_frame_t frame{};
    const int status = amqp_simple_wait_frame_noblock(conn_, &frame, &tv);
    if (status == AMQP_STATUS_TIMEOUT) return;
    checkStatus(status, "keep the connection alive");
    if (frame.frame_type == AMQP_FRAME_METHOD) {
        switch (frame.payload.method.id) {
        case AMQP_CHANNEL_CLOSE_METHOD: fail("keep the connection alive", "the broker closed the channel");
        case AMQP_CONNECTION_CLOSE_METHOD: fail("keep the connection alive", "the broker closed the connection");
        default: break;  // a late confirm: nothing waits for it any more
        }
    }
}

void AmqpConnection::consume(const std::string& queue, std::uint16_t prefetch, const std::string& tag)
{
    // Not global: the prefetch applies to each consumer started after it.
    amqp_basic_qos(conn_, 1, 0, prefetch, 0);
    checkReply(amqp_get_rpc_reply(conn_), "set prefetch");
    amqp_basic_consume(conn_, 1, bytes(queue), tag.empty() ? amqp_empty_bytes : bytes(tag), 0, 0, 0,
                       amqp_empty_table);
    checkReply(amqp_get_rpc_reply(conn_), "consume from " + queue);
}

std::optional<Envelope> AmqpConnection::next(std::chrono::milliseconds timeout)
{
    amqp_maybe_release_buffers(conn_);
    amqp_envelope_t envelope{};
    timeval tv = toTimeval(timeout);
    const amqp_rpc_reply_t reply = amqp_consume_message(conn_, &envelope, &tv, 0);
    if (reply.reply_type == AMQP_RESPONSE_NORMAL) return std::optional<Envelope>(std::in_place, envelope);
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && reply.library_error == AMQP_STATUS_TIMEOUT)
        return std::nullopt;
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        // A frame other than a delivery is waiting: read it, or retrying
        // would spin on it forever.
        amqp_frame_t frame{};
        checkStatus(amqp_simple_wait_frame(conn_, &frame), "read a frame");
        if (frame.frame_type == AMQP_FRAME_METHOD) {
            switch (frame.payload.method.id) {
            case AMQP_CHANNEL_CLOSE_METHOD: fail("consume", "the broker closed the channel");
            case AMQP_CONNECTION_CLOSE_METHOD: fail("consume", "the broker closed the connection");
            case AMQP_BASIC_CANCEL_METHOD: fail("consume", "the broker cancelled the consumer (queue deleted?)");
            default: break;
            }
        }
        return std::nullopt;
    }
    checkReply(reply, "consume");
    return std::nullopt;
}

void AmqpConnection::ack(std::uint64_t deliveryTag)
{
    checkStatus(amqp_basic_ack(conn_, 1, deliveryTag, 0), "acknowledge a message");
}

void AmqpConnection::reject(std::uint64_t deliveryTag, bool requeue)
{
    checkStatus(amqp_basic_reject(conn_, 1, deliveryTag, requeue ? 1 : 0), "reject a message");
}

}  // namespace orderpay
