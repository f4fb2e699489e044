#include "Amqp.h"

#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#else
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif

#include <cstring>
#include <stdexcept>
#include <vector>

namespace e2e {
namespace {

std::string bytes(amqp_bytes_t b) { return b.len ? std::string(static_cast<const char*>(b.bytes), b.len) : std::string(); }

std::string describe(const amqp_rpc_reply_t& r)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return "ok";
    case AMQP_RESPONSE_NONE:
        return "no reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
            return "connection closed by the broker: " + std::to_string(m->reply_code) + " " + bytes(m->reply_text);
        }
        if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
            return "channel closed by the broker: " + std::to_string(m->reply_code) + " " + bytes(m->reply_text);
        }
        return "broker exception, method " + std::to_string(r.reply.id);
    }
    return "unknown reply";
}

std::string fieldText(const amqp_field_value_t& v)
{
    switch (v.kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        return bytes(v.value.bytes);
    case AMQP_FIELD_KIND_I8: return std::to_string(v.value.i8);
    case AMQP_FIELD_KIND_U8: return std::to_string(v.value.u8);
    case AMQP_FIELD_KIND_I16: return std::to_string(v.value.i16);
    case AMQP_FIELD_KIND_U16: return std::to_string(v.value.u16);
    case AMQP_FIELD_KIND_I32: return std::to_string(v.value.i32);
    case AMQP_FIELD_KIND_U32: return std::to_string(v.value.u32);
    case AMQP_FIELD_KIND_I64: return std::to_string(v.value.i64);
    case AMQP_FIELD_KIND_U64: return std::to_string(v.value.u64);
    case AMQP_FIELD_KIND_TIMESTAMP: return std::to_string(v.value.u64);
    case AMQP_FIELD_KIND_BOOLEAN: return v.value.boolean ? "true" : "false";
    default: return "<field kind " + std::to_string(v.kind) + ">";
    }
}

}  // namespace

AmqpClient::AmqpClient(const std::string& uri, std::chrono::seconds timeout)
{
    std::vector<char> buf(uri.begin(), uri.end());
    buf.push_back('\0');
    amqp_connection_info info{};
    if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK)
        throw std::runtime_error("not an AMQP URI");
    where_ = std::string(info.user) + "@" + info.host + ":" + std::to_string(info.port) + "/" + info.vhost;

    conn_ = amqp_new_connection();
    amqp_socket_t* socket = amqp_tcp_socket_new(conn_);
    if (!socket) {
        amqp_destroy_connection(conn_);
        throw std::runtime_error("amqp_tcp_socket_new failed");
    }
    timeval tv{static_cast<time_t>(timeout.count()), 0};
    amqp_set_rpc_timeout(conn_, &tv);
    amqp_set_handshake_timeout(conn_, &tv);
    int rc = amqp_socket_open_noblock(socket, info.host, info.port, &tv);
    if (rc != AMQP_STATUS_OK) {
        amqp_destroy_connection(conn_);
        throw std::runtime_error("cannot connect to " + where_ + ": " + amqp_error_string2(rc));
    }
    amqp_rpc_reply_t r = amqp_login(conn_, info.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user, info.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        amqp_destroy_connection(conn_);
        throw std::runtime_error("cannot log in to " + where_ + ": " + describe(r));
    }
    try {
        openChannel();
    } catch (...) {
        amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(conn_);
        throw;
    }
}

AmqpClient::~AmqpClient()
{
    if (!conn_) return;
    amqp_channel_close(conn_, channel_, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn_);
}

void AmqpClient::check(const char* what)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
        throw std::runtime_error(std::string(what) + " on " + where_ + ": " + describe(r));
}

void AmqpClient::openChannel()
{
    ++channel_;  // a fresh number: the old one may still be closing
    amqp_channel_open(conn_, channel_);
    check("channel.open");
    amqp_confirm_select(conn_, channel_);
    check("confirm.select");
}

void AmqpClient::publish(const std::string& exchange, const std::string& routingKey, const std::string& body,
                         const std::map<std::string, std::string>& headers)
{
    std::vector<amqp_table_entry_t> entries;
    for (const auto& [k, v] : headers) {
        amqp_table_entry_t e{};
        e.key = amqp_cstring_bytes(k.c_str());
        e.value.kind = AMQP_FIELD_KIND_UTF8;
        e.value.value.bytes = amqp_bytes_t{v.size(), const_cast<char*>(v.data())};
        entries.push_back(e);
    }
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    props.delivery_mode = 2;
    props.content_type = amqp_cstring_bytes("application/json");
    if (!entries.empty()) {
        props._flags |= AMQP_BASIC_HEADERS_FLAG;
        props.headers.num_entries = static_cast<int>(entries.size());
        props.headers.entries = entries.data();
    }
    int rc = amqp_basic_publish(conn_, channel_, amqp_cstring_bytes(exchange.c_str()),
                                amqp_cstring_bytes(routingKey.c_str()), 0, 0, &props,
                                amqp_bytes_t{body.size(), const_cast<char*>(body.data())});
    if (rc != AMQP_STATUS_OK)
        throw std::runtime_error("basic.publish on " + where_ + ": " + amqp_error_string2(rc));
    // Wait for the publisher confirm (basic.ack) of this message.
    amqp_frame_t frame;
    timeval tv{10, 0};
    for (;;) {
        rc = amqp_simple_wait_frame_noblock(conn_, &frame, &tv);
        if (rc != AMQP_STATUS_OK)
            throw std::runtime_error("waiting for the publisher confirm on " + where_ + ": " + amqp_error_string2(rc));
        if (frame.frame_type != AMQP_FRAME_METHOD) continue;
        if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) break;
        if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD)
            throw std::runtime_error("the broker refused (nack) a message published to " + routingKey);
        if (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
            auto* m = static_cast<amqp_channel_close_t*>(frame.payload.method.decoded);
            std::string why = std::to_string(m->reply_code) + " " + bytes(m->reply_text);
            amqp_channel_close_ok_t ok{};
            amqp_send_method(conn_, channel_, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
            openChannel();
            throw std::runtime_error("publishing to " + routingKey + ": channel closed by the broker: " + why);
        }
    }
    amqp_maybe_release_buffers(conn_);
}

std::optional<std::uint32_t> AmqpClient::messageCount(const std::string& queue)
{
    amqp_queue_declare_ok_t* ok =
        amqp_queue_declare(conn_, channel_, amqp_cstring_bytes(queue.c_str()), 1 /*passive*/, 0, 0, 0, amqp_empty_table);
    if (ok) {
        auto count = ok->message_count;
        amqp_maybe_release_buffers(conn_);
        return count;
    }
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
        const int code = m->reply_code;
        const std::string text = bytes(m->reply_text);
        amqp_channel_close_ok_t closeOk{};
        amqp_send_method(conn_, channel_, AMQP_CHANNEL_CLOSE_OK_METHOD, &closeOk);
        openChannel();
        if (code == AMQP_NOT_FOUND) return std::nullopt;
        throw std::runtime_error("queue.declare(passive) " + queue + " on " + where_ + ": " + std::to_string(code) + " " + text);
    }
    throw std::runtime_error("queue.declare(passive) " + queue + " on " + where_ + ": " + describe(r));
}

std::optional<AmqpMessage> AmqpClient::get(const std::string& queue)
{
    amqp_rpc_reply_t r = amqp_basic_get(conn_, channel_, amqp_cstring_bytes(queue.c_str()), 0 /*no_ack*/);
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
        throw std::runtime_error("basic.get " + queue + " on " + where_ + ": " + describe(r));
    if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) return std::nullopt;
    AmqpMessage out;
    out.redelivered = static_cast<amqp_basic_get_ok_t*>(r.reply.decoded)->redelivered != 0;
    amqp_message_t message;
    r = amqp_read_message(conn_, channel_, &message, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
        throw std::runtime_error("reading a message of " + queue + " on " + where_ + ": " + describe(r));
    out.body = bytes(message.body);
    if (message.properties._flags & AMQP_BASIC_HEADERS_FLAG) {
        const amqp_table_t& t = message.properties.headers;
        for (int i = 0; i < t.num_entries; ++i)
            out.headers[bytes(t.entries[i].key)] = fieldText(t.entries[i].value);
    }
    amqp_destroy_message(&message);
    amqp_maybe_release_buffers(conn_);
    return out;
}

}  // namespace e2e
