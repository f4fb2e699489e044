#include "http/HttpServer.h"

#include "http/Router.h"

#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/ThreadPool.h>

namespace orderpay::http {

HttpServer::HttpServer(Service& service, const HttpSettings& settings)
{
    Poco::Net::ServerSocket socket;
    socket.bind(Poco::Net::SocketAddress(settings.host, settings.port), true);
    socket.listen(1024);
    port_ = socket.address().port();

    Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(settings.maxThreads);
    params->setMaxQueued(settings.maxQueued);
    params->setKeepAlive(true);
    params->setMaxKeepAliveRequests(0);  // unlimited
    const Poco::Timespan timeout(static_cast<long>(settings.readTimeout.count() / 1000),
                                 static_cast<long>(settings.readTimeout.count() % 1000) * 1000);
    // A client must send each part of its request within this time; idle
    // keep-alive connections are closed after it too, so they cannot pin
    // the worker threads.
    params->setTimeout(timeout);
    params->setKeepAliveTimeout(timeout);
    params->setServerName("orderpay");

    // Poco's default pool holds 16 threads at most; http.max_threads needs its own.
    pool_ = std::make_unique<Poco::ThreadPool>("http", 2, settings.maxThreads);
    server_ = std::make_unique<Poco::Net::HTTPServer>(new Router(service), *pool_, socket, params);
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() { server_->start(); }

void HttpServer::stop()
{
    if (!server_) return;
    server_->stopAll(false);
    pool_->joinAll();
}

int HttpServer::busyThreads() const { return server_ ? server_->currentThreads() : 0; }

}  // namespace orderpay::http
