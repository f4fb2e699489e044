#include "http/HttpServer.h"

#include "domain/Clock.h"
#include "logging/Log.h"

#include <Poco/Net/SocketAddress.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <pthread.h>

namespace orderpay::http {
namespace {

Poco::Timespan toTimespan(std::chrono::milliseconds ms)
{
    return Poco::Timespan(static_cast<long>(ms.count() / 1000), static_cast<long>(ms.count() % 1000) * 1000);
}

Poco::Net::HTTPServerParams::Ptr makeParams(const HttpSettings& settings)
{
    Poco::Net::HTTPServerParams::Ptr params(new Poco::Net::HTTPServerParams);
    params->setKeepAlive(true);
    params->setMaxKeepAliveRequests(0);  // unlimited
    params->setTimeout(toTimespan(settings.readTimeout));
    params->setKeepAliveTimeout(toTimespan(settings.readTimeout));
    params->setServerName("orderpay");
    return params;
}

}  // namespace

HttpServer::HttpServer(Service& service, const HttpSettings& settings, Listener& listener)
    : router_(service), settings_(settings), shared_{router_, settings_, makeParams(settings)}, listener_(listener)
{
    StatusBoard& board = service.status;
    shared_.streamEvent = [&board] { return board.latest(); };
    for (int i = 0; i < settings_.maxThreads; ++i) loops_.push_back(std::make_unique<EventLoop>(shared_, i));
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start()
{
    acceptorTick_ = clock::steadyMillis();
    for (auto& loop : loops_) loop->start();
    acceptor_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "http-accept");
        acceptLoop();
    });
}

void HttpServer::stop()
{
    if (stopped_) return;
    stopped_ = true;
    shared_.stopping = true;
    if (acceptor_.joinable()) acceptor_.join();
    for (auto& loop : loops_) loop->wake();
    for (auto& loop : loops_) loop->join();
}

std::string HttpServer::stalled(std::chrono::milliseconds limit) const
{
    const std::int64_t now = clock::steadyMillis();
    if (acceptor_.joinable() && now - acceptorTick_.load() > limit.count())
        return "the HTTP acceptor has not gone round for over " + std::to_string(limit.count() / 1000) + " s";
    for (const auto& loop : loops_) {
        if (now - loop->lastTick() > limit.count())
            return "HTTP event loop " + loop->name() + " has not gone round for over " +
                   std::to_string(limit.count() / 1000) + " s";
    }
    return {};
}

void HttpServer::acceptLoop()
{
    static Poco::Logger& log = Poco::Logger::get("orderpay.http");
    const int fd = listener_.socket().impl()->sockfd();
    std::size_t next = 0;
    while (!shared_.stopping) {
        acceptorTick_ = clock::steadyMillis();
        pollfd ready{fd, POLLIN, 0};
        if (::poll(&ready, 1, 100) <= 0) continue;  // also the tick to see stopping
        sockaddr_storage address{};
        socklen_t length = sizeof address;
        const int client = ::accept4(fd, reinterpret_cast<sockaddr*>(&address), &length, SOCK_CLOEXEC);
        if (client < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                logLine(log, Poco::Message::PRIO_ERROR,
                        std::string("cannot accept a connection: ") + std::strerror(errno) + "; trying again in 100 ms");
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
            continue;  // else the client gave up between poll and accept
        }
        const int on = 1;
        ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        loops_[next++ % loops_.size()]->adopt(
            client, Poco::Net::SocketAddress(reinterpret_cast<const sockaddr*>(&address), length));
    }
}

}  // namespace orderpay::http
