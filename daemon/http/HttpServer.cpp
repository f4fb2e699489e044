#include "http/HttpServer.h"

#include "http/ApiHandler.h"
#include "http/Problem.h"
#include "logging/Log.h"

#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPServerRequestImpl.h>
#include <Poco/Net/HTTPServerResponseImpl.h>
#include <Poco/Net/HTTPServerSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SocketAddress.h>

#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <memory>
#include <sstream>
#include <string_view>
#include <vector>
#include <pthread.h>

namespace orderpay::http {
namespace {

/// Poco keeps `buffered()` protected; whether bytes of a next request are
/// already in the session's buffer decides if a connection may leave it.
class Session : public Poco::Net::HTTPServerSession {
public:
    using HTTPServerSession::HTTPServerSession;
    using HTTPServerSession::buffered;
};

/// A request head larger than this is not waited for: Poco refuses it.
constexpr std::size_t kMaxHead = 64 * 1024;
/// The gate waits for bodies up to http.max_body_bytes, but not beyond
/// this: a whole request must fit in the socket's receive buffer.
constexpr std::size_t kMaxGateBody = 1024 * 1024;

/// The end of the last chunk of a chunked body without trailers ("0" CRLF
/// CRLF). A body with trailers is not recognised as whole in the gate and
/// times out there; no client of a JSON API sends them.
bool endsChunkedBody(std::string_view body)
{
    constexpr std::string_view last = "0\r\n\r\n";
    if (body.size() < last.size() || body.substr(body.size() - last.size()) != last) return false;
    return body.size() == last.size() || body.substr(0, body.size() - last.size()).ends_with("\r\n");
}

Poco::Timespan toTimespan(std::chrono::milliseconds ms)
{
    return Poco::Timespan(static_cast<long>(ms.count() / 1000), static_cast<long>(ms.count() % 1000) * 1000);
}

/// Bytes written to the socket that the client has not taken yet.
int unsentBytes(const Poco::Net::StreamSocket& socket)
{
    int n = 0;
    return ::ioctl(socket.impl()->sockfd(), TIOCOUTQ, &n) == 0 ? n : 0;
}

/// The headers every answer on a connection starts with.
void startResponse(Poco::Net::HTTPServerResponse& response, const std::string& version, bool keepAlive)
{
    response.setDate(Poco::Timestamp());
    response.setVersion(version);
    response.setKeepAlive(keepAlive);
    response.set("Server", "orderpay");
}

}  // namespace

/// A request whose handler deferred its answer. It goes to a worker when
/// both the answer is there (the writer's thread) and the thread that read
/// the request has let go of its connection, in whichever order they come.
class HttpServer::Pending : public Deferral {
public:
    explicit Pending(HttpServer& server) : server_(server) {}

    void expect() override { expected = true; }
    void answer(Answer answer) override
    {
        {
            std::lock_guard lock(mutex_);
            answer_ = std::move(answer);
            answered_ = true;
            if (!parked_) {
                answeredWake_.notify_one();  // the reading thread may be waiting for it
                return;
            }
        }
        server_.resume(this);
    }
    /// The reading thread waits for the answer itself, instead of parking.
    void awaitAnswer()
    {
        std::unique_lock lock(mutex_);
        answeredWake_.wait(lock, [this] { return answered_; });
    }
    /// The reading thread let go; the Pending is no longer its to touch.
    void park()
    {
        {
            std::lock_guard lock(mutex_);
            parked_ = true;
            if (!answered_) return;
        }
        server_.resume(this);
    }
    const Answer& answerToSend() const { return answer_; }

    bool expected = false;
    // What sending the answer needs, set before park().
    std::unique_ptr<Session> session;
    std::unique_ptr<ApiHandler> handler;
    std::string version;
    bool keepAlive = false;
    Clock::time_point deadline;

private:
    HttpServer& server_;
    std::mutex mutex_;
    std::condition_variable answeredWake_;
    Answer answer_;
    bool answered_ = false;
    bool parked_ = false;
};

HttpServer::HttpServer(Service& service, const HttpSettings& settings)
    : router_(service), settings_(settings), params_(new Poco::Net::HTTPServerParams)
{
    gateBodyLimit_ = std::min(settings.maxBodyBytes, kMaxGateBody);
    listener_.bind(Poco::Net::SocketAddress(settings.host, settings.port), true);
    // Room for a whole request while it waits, unread, in the gate (accepted
    // sockets inherit it; set before listen() so the window scale fits).
    const int wanted = static_cast<int>(kMaxHead + gateBodyLimit_);
    if (listener_.getReceiveBufferSize() < wanted) listener_.setReceiveBufferSize(wanted);
    listener_.listen(1024);
    port_ = listener_.address().port();

    params_->setKeepAlive(true);
    params_->setMaxKeepAliveRequests(0);  // unlimited
    // Each read of a request body must make progress within this time.
    params_->setTimeout(toTimespan(settings.readTimeout));
    params_->setKeepAliveTimeout(toTimespan(settings.readTimeout));
    params_->setServerName("orderpay");
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start()
{
    pollSet_.add(listener_, Poco::Net::PollSet::POLL_READ);
    gate_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "http-gate");  // top -H, perf, gdb
        gateLoop();
    });
    for (int i = 0; i < settings_.maxThreads; ++i) {
        exchanges_.push_back(std::make_unique<Exchange>());
        workers_.emplace_back([this, i, &exchange = *exchanges_.back()] {
            pthread_setname_np(pthread_self(), ("http-" + std::to_string(i + 1)).c_str());
            workerLoop(exchange);
        });
    }
}

void HttpServer::stop()
{
    if (stopping_.exchange(true)) return;
    queueReady_.notify_all();
    if (gate_.joinable()) gate_.join();
    for (auto& w : workers_) w.join();
    workers_.clear();
    std::lock_guard lock(waitingMutex_);
    for (auto& [fd, w] : waiting_) w.socket.close();
    waiting_.clear();
    listener_.close();
}

void HttpServer::gateLoop()
{
    auto lastExpiry = Clock::now();
    while (!stopping_) {
        Poco::Net::PollSet::SocketModeMap events;
        try {
            events = pollSet_.poll(Poco::Timespan(0, 100 * 1000));
        } catch (const Poco::Exception& e) {
            static Poco::Logger& log = Poco::Logger::get("orderpay.http");
            logLine(log, Poco::Message::PRIO_ERROR, "connection poll failed: " + e.displayText());
            continue;
        }
        for (const auto& [socket, mode] : events) {
            if (socket == listener_) accept();
            else examine(Poco::Net::StreamSocket(socket));
        }
        if (Clock::now() - lastExpiry >= std::chrono::milliseconds(100)) {
            expire();
            cutOverdue();
            lastExpiry = Clock::now();
        }
    }
    pollSet_.clear();
}

void HttpServer::accept()
{
    Poco::Net::StreamSocket socket;
    try {
        socket = listener_.acceptConnection();
        socket.setNoDelay(true);
    } catch (const Poco::Exception&) {
        return;  // the client gave up between poll and accept, or out of descriptors: try again later
    }
    park(socket);
}

void HttpServer::park(const Poco::Net::StreamSocket& socket)
{
    if (stopping_) return;  // dropping the last reference closes it
    {
        std::lock_guard lock(waitingMutex_);
        waiting_[socket.impl()->sockfd()] = {socket, Clock::now() + settings_.readTimeout};
    }
    pollSet_.add(socket, Poco::Net::PollSet::POLL_READ);
}

HttpServer::Request HttpServer::peekRequest(const Poco::Net::StreamSocket& socket, bool& needsContinue) const
{
    needsContinue = false;
    // Most requests fit in a small buffer on the stack; only a request that
    // fills it is peeked again into one as large as a request may be.
    char small[16 * 1024];
    std::vector<char> large;
    char* space = small;
    std::size_t size = sizeof small;
    ssize_t n = ::recv(socket.impl()->sockfd(), space, size, MSG_PEEK | MSG_DONTWAIT);
    if (n == static_cast<ssize_t>(sizeof small)) {
        large.resize(kMaxHead + gateBodyLimit_);
        space = large.data();
        size = large.size();
        n = ::recv(socket.impl()->sockfd(), space, size, MSG_PEEK | MSG_DONTWAIT);
    }
    if (n == 0) return Request::Closed;
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? Request::Incomplete : Request::Closed;
    const std::string_view buffer(space, static_cast<std::size_t>(n));

    const std::size_t headEnd = buffer.find("\r\n\r\n");
    if (headEnd == std::string::npos)
        return buffer.size() >= kMaxHead ? Request::Complete : Request::Incomplete;  // too big: Poco refuses it
    const std::size_t bodyStart = headEnd + 4;

    // The head is whole: Poco reads it (from the copy) to say how long the body is.
    Poco::Net::HTTPRequest head;
    try {
        std::istringstream in(std::string(buffer.substr(0, bodyStart)));
        head.read(in);
    } catch (const Poco::Exception&) {
        return Request::Complete;  // a bad head: the worker's Poco session answers it
    }
    const std::string_view body = buffer.substr(bodyStart);
    bool whole = true;
    if (head.getChunkedTransferEncoding()) {
        whole = body.size() >= gateBodyLimit_ || endsChunkedBody(body);
    } else if (head.hasContentLength()) {
        const auto length = head.getContentLength64();
        whole = length < 0 || static_cast<std::uint64_t>(length) > gateBodyLimit_ ||
                body.size() >= static_cast<std::uint64_t>(length);
    }
    if (whole) return Request::Complete;
    needsContinue = head.getExpectContinue();
    return Request::Incomplete;
}

void HttpServer::examine(const Poco::Net::StreamSocket& socket)
{
    bool needsContinue = false;
    const Request request = peekRequest(socket, needsContinue);
    if (request == Request::Incomplete) {
        if (needsContinue) {
            // The client waits for "100 Continue" before sending its body,
            // and the gate waits for the body: say it, once.
            std::lock_guard lock(waitingMutex_);
            auto it = waiting_.find(socket.impl()->sockfd());
            if (it != waiting_.end() && !it->second.continued) {
                it->second.continued = true;
                static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
                ::send(socket.impl()->sockfd(), kContinue, sizeof kContinue - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
            }
        }
        return;
    }
    pollSet_.remove(socket);
    Poco::Net::StreamSocket owned;
    bool continued = false;
    {
        std::lock_guard lock(waitingMutex_);
        auto it = waiting_.find(socket.impl()->sockfd());
        if (it == waiting_.end()) return;
        owned = it->second.socket;
        continued = it->second.continued;
        waiting_.erase(it);
    }
    if (request == Request::Closed) {
        owned.close();
        return;
    }
    dispatch(owned, continued);
}

void HttpServer::expire()
{
    const auto now = Clock::now();
    std::vector<Poco::Net::StreamSocket> expired;
    {
        std::lock_guard lock(waitingMutex_);
        for (auto it = waiting_.begin(); it != waiting_.end();) {
            if (it->second.deadline <= now) {
                expired.push_back(it->second.socket);
                it = waiting_.erase(it);
            } else {
                ++it;
            }
        }
    }
    for (auto& socket : expired) {
        pollSet_.remove(socket);
        // Bytes of a request were sent but never the whole request: say so.
        // An idle keep-alive connection is just closed.
        char byte;
        if (::recv(socket.impl()->sockfd(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
            refuse(socket, 408, "the request did not arrive within http.read_timeout");
        }
        socket.close();
    }
}

void HttpServer::cutOverdue()
{
    const auto now = Clock::now();
    for (auto& exchange : exchanges_) {
        std::lock_guard lock(exchange->mutex);
        if (exchange->fd == POCO_INVALID_SOCKET || exchange->deadline > now) continue;
        // The worker is blocked writing to a client that does not read: the
        // write fails at once, the worker moves on. Under the lock, so the
        // descriptor is still the worker's (it clears it before closing).
        ::shutdown(exchange->fd, SHUT_RDWR);
        exchange->fd = POCO_INVALID_SOCKET;
    }
}

void HttpServer::dispatch(const Poco::Net::StreamSocket& socket, bool continued)
{
    {
        std::lock_guard lock(queueMutex_);
        if (ready_.size() < static_cast<std::size_t>(settings_.maxQueued)) {
            ready_.push_back({socket, continued, nullptr});
            queueReady_.notify_one();
            return;
        }
    }
    Poco::Net::StreamSocket s(socket);
    refuse(s, 503, "too many requests are waiting (http.max_queued)");
    s.close();
}

bool HttpServer::othersWaiting()
{
    std::lock_guard lock(queueMutex_);
    return !ready_.empty();
}

void HttpServer::requeue(const Poco::Net::StreamSocket& socket)
{
    // Already admitted: not refused for http.max_queued, which bounds new arrivals.
    std::lock_guard lock(queueMutex_);
    ready_.push_back({socket, false, nullptr});
    queueReady_.notify_one();
}

void HttpServer::resume(Pending* pending)
{
    std::lock_guard lock(queueMutex_);
    ready_.push_back({Poco::Net::StreamSocket(), false, std::unique_ptr<Pending>(pending)});
    --deferred_;
    // Stopping workers wait for the last deferred answer: all of them may go then.
    if (stopping_ && deferred_ == 0) queueReady_.notify_all();
    else queueReady_.notify_one();
}

void HttpServer::workerLoop(Exchange& exchange)
{
    for (;;) {
        Ready next;
        {
            std::unique_lock lock(queueMutex_);
            queueReady_.wait(lock, [&] { return (stopping_ && deferred_ == 0) || !ready_.empty(); });
            if (ready_.empty()) return;  // stopping, and nothing left to answer
            next = std::move(ready_.front());
            ready_.pop_front();
        }
        try {
            serve(std::move(next), exchange);
        } catch (const std::exception& e) {
            static Poco::Logger& log = Poco::Logger::get("orderpay.http");
            logLine(log, Poco::Message::PRIO_DEBUG, std::string("connection ended: ") + e.what());
        }
    }
}

/// While a request is answered the gate may cut the connection if the
/// client does not take the answer in time; never once it is closed or parked.
struct HttpServer::Watched {
    Exchange& exchange;
    Watched(Exchange& e, poco_socket_t fd, Clock::time_point deadline) : exchange(e)
    {
        std::lock_guard lock(exchange.mutex);
        exchange.fd = fd;
        exchange.deadline = deadline;
    }
    ~Watched()
    {
        std::lock_guard lock(exchange.mutex);
        exchange.fd = POCO_INVALID_SOCKET;
    }
};

void HttpServer::serve(Ready next, Exchange& exchange)
{
    // Each request gets http.read_timeout for its answer to be taken; a
    // pipelined one whose predecessor's answer still sits unsent in the
    // socket inherits that deadline (else a slow reader could pipeline its
    // way past it).
    Clock::time_point deadline = Clock::now() + settings_.readTimeout;
    auto nextDeadline = [&](const Poco::Net::StreamSocket& socket) { deadline = answerDeadline(socket, deadline); };
    std::unique_ptr<Pending> pending;
    bool continued = next.continued;
    if (next.answered) {
        pending = std::move(next.answered);
        deadline = pending->deadline;
        nextDeadline(pending->session->socket());
        if (!sendDeferred(*pending, exchange, deadline) || !keepServing(*pending->session)) return;
        nextDeadline(pending->session->socket());
    } else {
        pending = std::make_unique<Pending>(*this);
        pending->session = std::make_unique<Session>(next.socket, params_);
    }
    for (;;) {
        const Next outcome = answerNext(pending, continued, exchange, deadline);
        if (outcome == Next::Deferred) return;  // the Pending has the connection now
        if (outcome == Next::Close || !keepServing(*pending->session)) return;
        nextDeadline(pending->session->socket());
    }
}

HttpServer::Next HttpServer::answerNext(std::unique_ptr<Pending>& pending, bool& continued, Exchange& exchange,
                                        Clock::time_point deadline)
{
    if (pending->expected) {  // the last request's Pending went with its answer: a fresh one
        auto fresh = std::make_unique<Pending>(*this);
        fresh->session = std::move(pending->session);
        pending = std::move(fresh);
    }
    Session& session = *pending->session;
    // Once a handler deferred its answer, the Pending must reach a worker
    // whatever happens here: the writer's callback points to it.
    std::unique_ptr<ApiHandler> handler;
    Next outcome = Next::Close;
    {
        Watched watched(exchange, session.socket().impl()->sockfd(), deadline);
        Poco::Net::HTTPServerResponseImpl response(session);
        try {
            Poco::Net::HTTPServerRequestImpl request(response, session, params_.get());
            startResponse(response, request.getVersion(), request.getKeepAlive() && !stopping_);
            handler.reset(router_.createRequestHandler(request));
            handler->setDeferral(pending.get());
            if (request.getExpectContinue() && !continued &&
                response.getStatus() == Poco::Net::HTTPResponse::HTTP_OK) {
                response.sendContinue();
            }
            continued = false;  // the gate's "100 Continue" was for the first request only
            pending->version = request.getVersion();
            pending->keepAlive = request.getKeepAlive();
            handler->handleRequest(request, response);
            // A body the handler did not read would be taken for the
            // next request: read it away, or end the connection. A
            // request with neither Content-Length nor chunked encoding
            // has no body (RFC 9112), whatever Poco's stream would wait for.
            bool bodyConsumed = true;
            if (request.getChunkedTransferEncoding() ||
                (request.hasContentLength() && request.getContentLength64() > 0)) {
                std::istream& rest = request.stream();
                char sink[4096];
                std::streamsize drained = 0;
                while (drained <= static_cast<std::streamsize>(settings_.maxBodyBytes) && rest.read(sink, sizeof sink))
                    drained += rest.gcount();
                bodyConsumed = rest.eof();
            }
            pending->keepAlive = pending->keepAlive && bodyConsumed;
            if (response.getKeepAlive() && !stopping_ && bodyConsumed) outcome = Next::KeepAlive;
        } catch (const Poco::Net::NoMessageException&) {
            // closed by the client between requests
        } catch (const Poco::Net::MessageException& e) {
            if (!response.sent() && !pending->expected) {
                Problem p = Problem::badRequest("the request head was refused: " + e.message());
                response.setKeepAlive(false);
                sendProblem(response, p);
            }
        } catch (const Poco::TimeoutException&) {
            if (!response.sent() && !pending->expected) sendProblem(response, Problem::requestTimeout());
        }
    }
    if (!pending->expected) return outcome;
    // Out of the request's scope (nothing here touches the session any
    // more): the answer may be sent from another thread from now on.
    if (outcome != Next::KeepAlive) pending->keepAlive = false;
    pending->handler = std::move(handler);
    pending->deadline = deadline;
    if (!othersWaiting()) {
        // No connection waits for a thread: this one waits for the commit
        // and answers on its connection itself, which saves two hand-overs
        // (to the line of ready connections and back). The writer answers
        // every unit, at stop too. While others wait, the connection lets
        // go of its thread instead, so that a commit is not limited to as
        // many requests as there are threads.
        pending->awaitAnswer();
        // (A slow commit does not eat into the client's time to take the answer.)
        if (!sendDeferred(*pending, exchange, answerDeadline(session.socket(), deadline))) return Next::Close;
        return Next::KeepAlive;
    }
    {
        std::lock_guard lock(queueMutex_);
        ++deferred_;
    }
    pending.release()->park();
    return Next::Deferred;
}

HttpServer::Clock::time_point HttpServer::answerDeadline(const Poco::Net::StreamSocket& socket,
                                                         Clock::time_point inherited) const
{
    return unsentBytes(socket) == 0 ? Clock::now() + settings_.readTimeout : inherited;
}

bool HttpServer::sendDeferred(Pending& pending, Exchange& exchange, Clock::time_point deadline)
{
    Session& session = *pending.session;
    Watched watched(exchange, session.socket().impl()->sockfd(), deadline);
    Poco::Net::HTTPServerResponseImpl response(session);
    startResponse(response, pending.version, pending.keepAlive && !stopping_);
    pending.handler->resume(response, pending.answerToSend());
    return response.getKeepAlive() && !stopping_;
}

bool HttpServer::keepServing(Poco::Net::HTTPServerSession& session)
{
    if (static_cast<Session&>(session).buffered() > 0) return true;  // the next request is already here
    Poco::Net::StreamSocket s = session.socket();
    bool needsContinue = false;
    if (othersWaiting()) {
        // Fair turns: other connections wait for a thread, so this one
        // goes to the back of their line (its next request, if whole,
        // straight there; else through the gate).
        if (peekRequest(s, needsContinue) == Request::Complete) requeue(session.detachSocket());
        else park(session.detachSocket());
        return false;
    }
    // Clients on keep-alive usually send the next request at once; a
    // short wait for it saves a trip through the gate.
    if (s.poll(Poco::Timespan(0, 1000), Poco::Net::Socket::SELECT_READ) &&
        peekRequest(s, needsContinue) == Request::Complete)
        return true;
    park(session.detachSocket());
    return false;
}

void HttpServer::refuse(Poco::Net::StreamSocket& socket, int status, const std::string& detail)
{
    // From the gate thread: a few hundred bytes into an empty send buffer
    // do not block, and the timeout bounds the case where they would.
    // What the client sent is read away first: closing a socket with unread
    // bytes resets the connection, and the reset can destroy the answer
    // before the client reads it.
    char sink[16 * 1024];
    for (std::size_t drained = 0; drained < kMaxHead + kMaxGateBody;) {
        const ssize_t n = ::recv(socket.impl()->sockfd(), sink, sizeof sink, MSG_DONTWAIT);
        if (n <= 0) break;
        drained += static_cast<std::size_t>(n);
    }
    try {
        socket.setSendTimeout(Poco::Timespan(0, 100 * 1000));
        Poco::Net::HTTPServerSession session(socket, new Poco::Net::HTTPServerParams);
        {
            // The body is flushed when the response goes: before the socket
            // leaves the session (whose destructor would close it).
            Poco::Net::HTTPServerResponseImpl response(session);
            response.setVersion(Poco::Net::HTTPMessage::HTTP_1_1);
            response.setKeepAlive(false);
            sendProblem(response, status == 408 ? Problem::requestTimeout() : Problem::unavailable(detail, 1));
        }
        socket = session.detachSocket();
    } catch (const Poco::Exception&) {
        // The client is gone; the connection is closed next either way.
    }
}

}  // namespace orderpay::http
