#include "http/Connection.h"

#include "http/ApiHandler.h"
#include "http/EventLoop.h"
#include "metrics/Metrics.h"

#include <Poco/Net/Socket.h>

#include <algorithm>
#include <cstring>

namespace orderpay::http {
namespace {

/// Socket's constructor from a SocketImpl is protected; StreamSocket's is
/// private. Through this, a StreamSocket gets our implementation.
class Adopted : public Poco::Net::Socket {
public:
    explicit Adopted(Poco::Net::SocketImpl* impl) : Socket(impl) {}
};

}  // namespace

ConnectionSocket::ConnectionSocket(poco_socket_t fd, const Poco::Net::SocketAddress& peer)
    : StreamSocketImpl(fd), peer_(peer)
{
}

int ConnectionSocket::receiveBytes(void* buffer, int length, int)
{
    const std::size_t n = std::min(static_cast<std::size_t>(std::max(length, 0)), limit - taken);
    std::memcpy(buffer, received.data() + taken, n);
    taken += n;
    return static_cast<int>(n);  // 0 past the request's end: the end of the stream for Poco
}

void ConnectionSocket::consume(std::size_t n)
{
    start += n;
    if (start >= received.size()) {
        received.clear();
        start = 0;
    }
}

int ConnectionSocket::sendBytes(const void* buffer, int length, int)
{
    toSend.append(static_cast<const char*>(buffer), static_cast<std::size_t>(std::max(length, 0)));
    return length;
}

Poco::Net::SocketAddress ConnectionSocket::address()
{
    if (!localKnown_) {
        local_ = StreamSocketImpl::address();
        localKnown_ = true;
    }
    return local_;
}

Poco::Net::SocketAddress ConnectionSocket::peerAddress() { return peer_; }

Connection::Connection(poco_socket_t fd, const Poco::Net::SocketAddress& peer)
    : io(*new ConnectionSocket(fd, peer)), socket(Adopted(&io))
{
    ++Metrics::instance().connectionsOpen;
}

Connection::~Connection() { --Metrics::instance().connectionsOpen; }

}  // namespace orderpay::http
