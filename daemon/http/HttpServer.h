#pragma once

#include "http/EventLoop.h"
#include "http/Listener.h"
#include "http/Router.h"
#include "http/Service.h"

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
    /// Serves on `listener`'s socket, which must outlive this object.
    HttpServer(Service& service, const HttpSettings& settings, Listener& listener);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    void start();
    /// Stops accepting; answers owed are sent (with Connection: close),
    /// idle connections closed.
    void stop();
    /// Why the server is not alive now (an event loop or the acceptor has
    /// not gone round for over `limit`), or empty if it is.
    std::string stalled(std::chrono::milliseconds limit) const;

private:
    void acceptLoop();

    Router router_;
    const HttpSettings settings_;
    LoopShared shared_;
    Listener& listener_;
    std::vector<std::unique_ptr<EventLoop>> loops_;
    std::thread acceptor_;
    std::atomic<std::int64_t> acceptorTick_{0};  // steady milliseconds of its last round
    bool stopped_ = false;
};

}  // namespace orderpay::http
