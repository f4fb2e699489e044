#pragma once

#include "http/Service.h"

#include <Poco/Net/HTTPServer.h>
#include <Poco/ThreadPool.h>

#include <memory>

namespace orderpay::http {

/// The listening socket and Poco's HTTPServer with its thread pool.
class HttpServer {
public:
    /// Binds at once, so a port in use fails start-up before READY.
    HttpServer(Service& service, const HttpSettings& settings);
    ~HttpServer();

    void start();
    /// Stops accepting; requests in progress are answered first.
    void stop();
    std::uint16_t port() const { return port_; }
    int busyThreads() const;

private:
    std::unique_ptr<Poco::ThreadPool> pool_;  // outlives server_
    std::unique_ptr<Poco::Net::HTTPServer> server_;
    std::uint16_t port_ = 0;
};

}  // namespace orderpay::http
