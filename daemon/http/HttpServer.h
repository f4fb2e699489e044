#pragma once

#include "http/EventLoop.h"
#include "http/Router.h"
#include "http/Service.h"

#include <Poco/Net/ServerSocket.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

namespace orderpay::http {

/// The HTTP front: Poco parses requests and writes answers; this class and
/// its event loops decide when, and move the bytes.
///
/// An acceptor thread takes new connections and deals them out in turn to
/// http.max_threads event loops (EventLoop). A loop owns its connections
/// for their lifetime: it reads them without blocking, hands a request to
/// Poco's parser and the handler only once it has arrived whole
/// (RequestFraming), and sends the answer itself. So an idle or slow client
/// holds no thread: a request that does not arrive whole within
/// http.read_timeout gets a 408, an answer the client does not take within
/// http.read_timeout ends its connection. A handler whose write goes through
/// the Committer defers its answer (Deferral); the loop goes on with its
/// other connections and sends the answer when the writer hands it back. At
/// most http.max_queued answers wait for their commit; a write beyond them
/// is answered 503 at once.
class HttpServer {
public:
    /// Binds at once, so a port in use fails start-up before READY.
    HttpServer(Service& service, const HttpSettings& settings);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    void start();
    /// Stops accepting; answers owed are sent (with Connection: close),
    /// idle connections closed.
    void stop();
    std::uint16_t port() const { return port_; }

private:
    void acceptLoop();

    Router router_;
    const HttpSettings settings_;
    LoopShared shared_;
    Poco::Net::ServerSocket listener_;
    std::uint16_t port_ = 0;
    std::vector<std::unique_ptr<EventLoop>> loops_;
    std::thread acceptor_;
    bool stopped_ = false;
};

}  // namespace orderpay::http
