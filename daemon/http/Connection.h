#pragma once


#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/StreamSocketImpl.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

namespace orderpay::http {

class ApiHandler;
class PendingAnswer;

/// A client connection's socket as Poco's HTTP session sees it. Poco parses
/// the request from the bytes the event loop already received, and writes
/// its answer into the bytes the loop is to send: parsing and answering
/// never wait on the network, so one thread can serve many connections.
/// Poco reads only up to the end of the request being answered (`limit`),
/// so a session never holds bytes of the next one.
class ConnectionSocket : public Poco::Net::StreamSocketImpl {
public:
    ConnectionSocket(poco_socket_t fd, const Poco::Net::SocketAddress& peer);

    int receiveBytes(void* buffer, int length, int flags = 0) override;
    int sendBytes(const void* buffer, int length, int flags = 0) override;
    /// Asked by Poco for every request: answered from memory.
    Poco::Net::SocketAddress address() override;
    Poco::Net::SocketAddress peerAddress() override;
    /// Poco closes the socket when a session ends; sessions last one
    /// request here, so the descriptor is closed only with the last
    /// reference to this object (SocketImpl's destructor).
    void close() override {}
    /// Poco shuts the sending side at the end of a body without a length
    /// (an event stream's): the stream goes on here, and the loop shuts
    /// a connection down itself when it ends one (EventLoop::linger).
    void shutdownSend() override {}
    /// The loop never blocks on the socket: no timeouts to set.
    void setSendTimeout(const Poco::Timespan&) override {}
    void setReceiveTimeout(const Poco::Timespan&) override {}

    /// The bytes received that no answered request took.
    std::string_view unanswered() const { return std::string_view(received).substr(start); }
    /// The first `n` of them were a request, now answered.
    void consume(std::size_t n);

    std::string received;   // read from the client; from `start` on not yet answered
    std::size_t start = 0;  // (kept as an offset: pipelined requests are not moved one by one)
    std::size_t taken = 0;  // up to here Poco read the current request
    std::size_t limit = 0;  // Poco may read up to here: the current request's end
    std::string toSend;     // written by Poco, not yet taken by the kernel
    std::size_t sent = 0;   // bytes of `toSend` the kernel took

private:
    Poco::Net::SocketAddress peer_;
    Poco::Net::SocketAddress local_;
    bool localKnown_ = false;
};

/// One connection, owned by the event loop that reads it.
struct Connection {
    enum class State {
        Reading,    // waiting for a whole request (deadline: http.read_timeout)
        Answering,  // its request's write waits for its commit (no deadline)
        Writing,    // the client has not taken the whole answer yet (deadline)
        Streaming,  // an event stream (/status/stream): sent an event a second until the client goes
        Closing,    // answer sent and send side shut: reading what the client still sends away
        Closed,     // freed once the events that may name it are handled
    };

    Connection(poco_socket_t fd, const Poco::Net::SocketAddress& peer);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    ConnectionSocket& io;           // owned by `socket`
    Poco::Net::StreamSocket socket;  // what Poco's sessions are given
    State state = State::Reading;
    std::chrono::steady_clock::time_point deadline;
    bool continued = false;   // "100 Continue" sent for the request still arriving
    bool unread = false;      // the socket may hold bytes not read yet
    bool peerClosed = false;  // the client shut its sending side
    bool closeAfterAnswer = false;
    std::size_t lingered = 0;  // bytes read away while Closing
    // The answer to come for a request whose write waits for its commit.
    std::unique_ptr<PendingAnswer> pending;
    std::unique_ptr<ApiHandler> handler;
};

}  // namespace orderpay::http
