#include "http/EventLoop.h"

#include "domain/Clock.h"
#include "http/ApiHandler.h"
#include "http/Problem.h"
#include "http/Router.h"
#include "logging/Log.h"
#include "metrics/Metrics.h"
#include "settings/Settings.h"

#include <Poco/Net/HTTPServerRequestImpl.h>
#include <Poco/Net/HTTPServerResponseImpl.h>
#include <Poco/Net/HTTPServerSession.h>
#include <Poco/Net/NetException.h>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <pthread.h>
#include <system_error>

namespace orderpay::http {
namespace {

/// How often deadlines are looked at.
constexpr std::chrono::milliseconds kTick(100);
/// After an answer that ends a connection while the client may still be
/// sending (a refused body), what it sends is read away for at most this
/// long before the connection is closed: closing with unread bytes resets
/// the connection, and the reset can destroy the answer before the client
/// reads it.
constexpr std::chrono::milliseconds kLinger(2000);
constexpr std::size_t kMaxLingerBytes = 16 * 1024 * 1024;
/// Event streams: one event a second; a client that lets this much of them
/// pile up unsent (minutes of events) is not listening, and is dropped.
constexpr std::chrono::milliseconds kStreamInterval(1000);
constexpr std::size_t kMaxStreamBacklog = 1024 * 1024;

/// The headers every answer starts with.
void startResponse(Poco::Net::HTTPServerResponse& response, const std::string& version, bool keepAlive)
{
    response.setDate(Poco::Timestamp());
    response.setVersion(version);
    response.setKeepAlive(keepAlive);
    response.set("Server", "orderpay");
}

[[noreturn]] void fail(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

}  // namespace

bool PendingAnswer::expect()
{
    if (!loop_.admit()) return false;
    expected = true;
    return true;
}

void PendingAnswer::answer(Answer answer)
{
    answer_ = std::move(answer);
    loop_.deliver(this);
}

EventLoop::EventLoop(LoopShared& shared, int index) : shared_(shared), index_(index)
{
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) fail("epoll_create1");
    wakeFd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wakeFd_ < 0) fail("eventfd");
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.ptr = nullptr;  // the wake-up
    if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, wakeFd_, &event) < 0) fail("epoll_ctl");
}

EventLoop::~EventLoop()
{
    join();
    connections_.clear();
    closed_.clear();
    for (auto& [fd, peer] : adopted_) ::close(fd);
    ::close(wakeFd_);
    ::close(epoll_);
}

void EventLoop::start()
{
    tick_ = clock::steadyMillis();
    thread_ = std::thread([this] {
        pthread_setname_np(pthread_self(), name().c_str());  // top -H, perf, gdb
        run();
    });
}

void EventLoop::join()
{
    if (thread_.joinable()) thread_.join();
}

bool EventLoop::admit()
{
    if (shared_.awaitingCommit.fetch_add(1) >= shared_.settings.maxQueued) {
        shared_.awaitingCommit.fetch_sub(1);
        return false;
    }
    ++Metrics::instance().answersWaiting;
    return true;
}

void EventLoop::adopt(poco_socket_t fd, const Poco::Net::SocketAddress& peer)
{
    std::lock_guard lock(inboxMutex_);
    adopted_.emplace_back(fd, peer);
    if (!woken_) {
        woken_ = true;
        wake();
    }
}

void EventLoop::deliver(PendingAnswer* pending)
{
    std::lock_guard lock(inboxMutex_);
    answered_.push_back(pending);
    if (!woken_) {
        woken_ = true;
        wake();
    }
}

void EventLoop::wake()
{
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wakeFd_, &one, sizeof one);  // cannot fail short of overflow
}

void EventLoop::run()
{
    static Poco::Logger& log = Poco::Logger::get("orderpay.http");
    epoll_event events[128];
    auto nextTick = Clock::now() + kTick;
    for (;;) {
        tick_ = clock::steadyMillis();
        if (shared_.stopping) {
            stopIdle();
            if (connections_.empty()) {
                takeInbox();  // connections adopted meanwhile are closed
                if (connections_.empty()) return;
            }
        }
        const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(nextTick - Clock::now());
        const int n = ::epoll_wait(epoll_, events, std::size(events), static_cast<int>(std::max<long>(wait.count(), 0)));
        if (n < 0 && errno != EINTR) {
            logLine(log, Poco::Message::PRIO_ERROR, std::string("epoll_wait failed: ") + std::strerror(errno));
        }
        for (int i = 0; i < n; ++i) {
            if (events[i].data.ptr == nullptr) {
                takeInbox();
            } else {
                auto& c = *static_cast<Connection*>(events[i].data.ptr);
                guarded(c, [&] { onEvents(c, events[i].events); });
            }
        }
        closed_.clear();
        if (Clock::now() >= nextTick) {
            expire();
            if (streams_ > 0) pushStreams();
            closed_.clear();
            nextTick = Clock::now() + kTick;
        }
    }
}

void EventLoop::takeInbox()
{
    std::uint64_t count = 0;
    [[maybe_unused]] const auto r = ::read(wakeFd_, &count, sizeof count);
    std::vector<std::pair<poco_socket_t, Poco::Net::SocketAddress>> adopted;
    std::vector<PendingAnswer*> answered;
    {
        std::lock_guard lock(inboxMutex_);
        adopted.swap(adopted_);
        answered.swap(answered_);
        woken_ = false;
    }
    for (auto& [fd, peer] : adopted) {
        auto c = std::make_unique<Connection>(fd, peer);  // owns the descriptor from here on
        if (shared_.stopping) continue;
        epoll_event event{};
        event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        event.data.ptr = c.get();
        if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &event) < 0) continue;
        c->deadline = Clock::now() + shared_.settings.readTimeout;
        c->unread = true;  // bytes may have come before it was watched
        Connection& added = *c;
        connections_.emplace(c.get(), std::move(c));
        guarded(added, [&] { serveReceived(added); });
    }
    for (PendingAnswer* pending : answered) {
        Connection& c = pending->connection();
        guarded(c, [&] {
            sendDeferred(*pending);
            serveReceived(c);  // its next request may be here already
        });
    }
}

template <typename Work>
void EventLoop::guarded(Connection& c, Work&& work)
{
    try {
        work();
    } catch (const std::exception& e) {
        // Not expected (Poco's and the handlers' errors are answered where
        // they occur): the connection is closed, unless an answer is still
        // owed to it.
        static Poco::Logger& log = Poco::Logger::get("orderpay.http");
        logLine(log, Poco::Message::PRIO_ERROR, std::string("HTTP connection failed: ") + e.what());
        if (c.state != Connection::State::Answering && c.state != Connection::State::Closed) close(c);
    }
}

void EventLoop::onEvents(Connection& c, std::uint32_t events)
{
    if (c.state == Connection::State::Closed) return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c.unread = true;
    // The client's end of stream: read after everything it sent before it.
    if (events & (EPOLLRDHUP | EPOLLHUP)) c.peerClosed = true;
    switch (c.state) {
    case Connection::State::Reading:
        if (c.unread) serveReceived(c);
        break;
    case Connection::State::Writing:
        if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
            finishAnswer(c);
            serveReceived(c);  // if the connection goes on with its next request
        }
        break;
    case Connection::State::Closing:
        if (c.unread) drain(c);
        break;
    case Connection::State::Streaming:
        if (c.unread) discardReceived(c);
        if (c.state == Connection::State::Streaming && (events & EPOLLOUT)) flush(c);
        break;
    case Connection::State::Answering:  // read once the answer is sent
    case Connection::State::Closed:
        break;
    }
}

void EventLoop::readSocket(Connection& c)
{
    ConnectionSocket& io = c.io;
    const std::size_t limit = receiveLimit(shared_.settings.maxBodyBytes);
    char buffer[64 * 1024];
    c.unread = false;
    if (io.start > 0) {  // answered requests' bytes go before more are read
        io.received.erase(0, io.start);
        io.start = 0;
    }
    while (io.received.size() < limit) {
        const std::size_t want = std::min(sizeof buffer, limit - io.received.size());
        const ssize_t n = ::recv(io.sockfd(), buffer, want, MSG_DONTWAIT);
        if (n > 0) {
            io.received.append(buffer, static_cast<std::size_t>(n));
            if (static_cast<std::size_t>(n) < want) return;  // all there was (more raises a new event)
            continue;
        }
        if (n == 0) {
            c.peerClosed = true;
            return;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) close(c);  // reset by the client
        return;
    }
    c.unread = true;  // the limit, not the socket, ended the read
}

void EventLoop::serveReceived(Connection& c)
{
    while (c.state == Connection::State::Reading) {
        if (c.unread) {
            readSocket(c);
            if (c.state == Connection::State::Closed) return;
        }
        Framing framing = frameRequest(c.io.unanswered(), shared_.settings.maxBodyBytes);
        if (framing.kind == Framing::Kind::Ambiguous) {
            refuse(c, Problem::badRequest("the request's body cannot be framed for sure: " + framing.why));
            return;
        }
        if (framing.kind == Framing::Kind::TooLarge) {
            refuse(c, Problem::payloadTooLarge(shared_.settings.maxBodyBytes));
            return;
        }
        if (framing.kind == Framing::Kind::Incomplete) {
            // (Never at the receive limit: framing does not wait past it.)
            if (c.peerClosed) {
                close(c);  // gone with its request unsent, or idle and gone
                return;
            }
            if (framing.expectContinue && !c.continued) {
                // The client waits for this before it sends the body.
                c.continued = true;
                c.io.toSend += "HTTP/1.1 100 Continue\r\n\r\n";
                if (!flush(c) && c.state == Connection::State::Closed) return;
            }
            if (!c.unread) return;  // until more bytes come
            continue;
        }
        serve(c, framing);
    }
}

void EventLoop::serve(Connection& c, const Framing& framing)
{
    ConnectionSocket& io = c.io;
    const bool whole = framing.kind == Framing::Kind::Whole;
    io.taken = io.start;
    io.limit = whole ? io.start + framing.end : io.received.size();
    auto pending = std::make_unique<PendingAnswer>(*this, c);
    std::unique_ptr<ApiHandler> handler;
    bool keepAlive = false;
    {
        Poco::Net::HTTPServerSession session(c.socket, shared_.params);
        std::optional<std::string> refused;  // why Poco refused the head
        {
            Poco::Net::HTTPServerResponseImpl response(session);
            try {
                Poco::Net::HTTPServerRequestImpl request(response, session, shared_.params.get());
                keepAlive = request.getKeepAlive() && whole && !shared_.stopping;
                startResponse(response, request.getVersion(), keepAlive);
                handler.reset(shared_.router.createRequestHandler(request));
                handler->setDeferral(pending.get());
                if (request.getExpectContinue() && !c.continued &&
                    response.getStatus() == Poco::Net::HTTPResponse::HTTP_OK) {
                    response.sendContinue();
                }
                pending->version = request.getVersion();
                pending->keepAlive = keepAlive;
                handler->handleRequest(request, response);
                keepAlive = keepAlive && response.getKeepAlive();
            } catch (const Poco::Exception& e) {
                // A head Poco refuses (the handlers answer their own errors).
                keepAlive = false;
                if (!response.sent() && !pending->expected) refused = e.message();
            }
        }
        if (refused) {
            // On a response of its own: the one above refers to the request
            // whose construction failed.
            Poco::Net::HTTPServerResponseImpl response(session);
            startResponse(response, Poco::Net::HTTPMessage::HTTP_1_1, false);
            sendProblem(response, Problem::badRequest("the request head was refused: " + *refused));
        }
    }  // the answer is in io.toSend now
    c.continued = false;
    // The request's bytes go, whether its handler read them all or not.
    if (whole) io.consume(framing.end);
    else io.consume(io.received.size());
    io.taken = io.limit = 0;
    c.closeAfterAnswer = !keepAlive;
    if (handler && handler->streams() && !shared_.stopping) {
        // The head and the first event are in io.toSend; the rest come
        // from pushStreams(). What the client sends from now on is ignored.
        c.state = Connection::State::Streaming;
        ++streams_;
        if (nextStreamPush_ == Clock::time_point{}) nextStreamPush_ = Clock::now() + kStreamInterval;
        flush(c);
        discardReceived(c);
        return;
    }
    if (pending->expected) {
        // The writer's thread answers through `pending`; until then the
        // connection reads nothing and cannot be closed.
        c.pending = std::move(pending);
        c.handler = std::move(handler);
        c.state = Connection::State::Answering;
        return;
    }
    finishAnswer(c);
}

void EventLoop::sendDeferred(PendingAnswer& pending)
{
    Connection& c = pending.connection();
    const std::unique_ptr<PendingAnswer> done = std::move(c.pending);
    const std::unique_ptr<ApiHandler> handler = std::move(c.handler);
    shared_.awaitingCommit.fetch_sub(1);
    --Metrics::instance().answersWaiting;
    bool keepAlive = false;
    {
        Poco::Net::HTTPServerSession session(c.socket, shared_.params);
        Poco::Net::HTTPServerResponseImpl response(session);
        startResponse(response, pending.version, pending.keepAlive && !shared_.stopping);
        try {
            handler->resume(response, pending.answerToSend());
            keepAlive = response.getKeepAlive() && !shared_.stopping;
        } catch (const std::exception&) {
            keepAlive = false;  // resume() answers what the answer throws; this is only Poco failing
        }
    }
    c.closeAfterAnswer = c.closeAfterAnswer || !keepAlive;
    finishAnswer(c);
}

void EventLoop::finishAnswer(Connection& c)
{
    if (!flush(c)) {
        if (c.state == Connection::State::Closed) return;
        if (c.state != Connection::State::Writing) {
            // The client has http.read_timeout to take the answer.
            c.state = Connection::State::Writing;
            c.deadline = Clock::now() + shared_.settings.readTimeout;
        }
        return;
    }
    if (c.closeAfterAnswer || shared_.stopping) {
        linger(c);
        return;
    }
    // Its next request, if already here, is served by the caller
    // (serveReceived): not from here, which a long pipeline would recurse.
    c.state = Connection::State::Reading;
    c.deadline = Clock::now() + shared_.settings.readTimeout;
}

bool EventLoop::flush(Connection& c)
{
    ConnectionSocket& io = c.io;
    while (io.sent < io.toSend.size()) {
        const ssize_t n = ::send(io.sockfd(), io.toSend.data() + io.sent, io.toSend.size() - io.sent,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            io.sent += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
        close(c);  // the client is gone
        return false;
    }
    io.sent = 0;
    io.toSend.clear();
    if (io.toSend.capacity() > 64 * 1024) std::string().swap(io.toSend);  // a large answer's memory goes back
    return true;
}

void EventLoop::refuse(Connection& c, const Problem& problem)
{
    {
        Poco::Net::HTTPServerSession session(c.socket, shared_.params);
        Poco::Net::HTTPServerResponseImpl response(session);
        startResponse(response, Poco::Net::HTTPMessage::HTTP_1_1, false);
        sendProblem(response, problem);
    }
    // The metrics count it with the requests no route matched.
    Metrics::instance().observeRequest("unmatched", problem.status, 0);
    c.io.consume(c.io.received.size());
    c.closeAfterAnswer = true;
    finishAnswer(c);
}

void EventLoop::linger(Connection& c)
{
    if (c.peerClosed) {
        close(c);
        return;
    }
    ::shutdown(c.io.sockfd(), SHUT_WR);  // the client reads the answer, then the end
    c.state = Connection::State::Closing;
    c.deadline = Clock::now() + std::min<std::chrono::milliseconds>(kLinger, shared_.settings.readTimeout);
    c.io.consume(c.io.received.size());
    c.unread = true;
    drain(c);
}

void EventLoop::drain(Connection& c)
{
    char buffer[16 * 1024];
    c.unread = false;
    for (;;) {
        const ssize_t n = ::recv(c.io.sockfd(), buffer, sizeof buffer, MSG_DONTWAIT);
        if (n > 0) {
            c.lingered += static_cast<std::size_t>(n);
            if (c.lingered > kMaxLingerBytes) break;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        break;  // the client closed too (or reset)
    }
    close(c);
}

void EventLoop::pushStreams()
{
    const auto now = Clock::now();
    if (now < nextStreamPush_) return;
    nextStreamPush_ = now + kStreamInterval;
    const std::string data = shared_.streamEvent ? shared_.streamEvent() : std::string("{}");
    if (data.empty()) return;  // nothing sampled yet
    const std::string event = "event: status\ndata: " + data + "\n\n";
    std::vector<Connection*> streams;
    for (auto& [key, c] : connections_)
        if (c->state == Connection::State::Streaming) streams.push_back(key);
    for (Connection* c : streams) {
        if (c->io.toSend.size() - c->io.sent > kMaxStreamBacklog) {
            close(*c);
            continue;
        }
        c->io.toSend += event;
        flush(*c);
    }
}

void EventLoop::discardReceived(Connection& c)
{
    char buffer[4096];
    c.unread = false;
    c.io.consume(c.io.received.size() - c.io.start);
    for (;;) {
        const ssize_t n = ::recv(c.io.sockfd(), buffer, sizeof buffer, MSG_DONTWAIT);
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        close(c);  // the client went (or reset)
        return;
    }
}

void EventLoop::expire()
{
    const auto now = Clock::now();
    std::vector<Connection*> due;
    for (auto& [key, c] : connections_) {
        if (c->state != Connection::State::Answering && c->state != Connection::State::Streaming && c->deadline <= now)
            due.push_back(key);
    }
    for (Connection* c : due) {
        // Bytes of a request came, but never the whole request: say so.
        // An idle keep-alive connection is just closed, as is one whose
        // client does not take its answer.
        if (c->state == Connection::State::Reading && !c->io.unanswered().empty()) refuse(*c, Problem::requestTimeout());
        else close(*c);
    }
}

void EventLoop::stopIdle()
{
    std::vector<Connection*> idle;
    for (auto& [key, c] : connections_) {
        // Closing ones end by their deadline; a stream ends with the daemon.
        if (c->state == Connection::State::Reading || c->state == Connection::State::Streaming) idle.push_back(key);
    }
    for (Connection* c : idle) close(*c);
    closed_.clear();
}

void EventLoop::close(Connection& c)
{
    if (c.state == Connection::State::Streaming) --streams_;
    c.state = Connection::State::Closed;
    auto it = connections_.find(&c);
    if (it == connections_.end()) return;
    ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c.io.sockfd(), nullptr);
    closed_.push_back(std::move(it->second));  // the descriptor closes with it, after this round of events
    connections_.erase(it);
}

}  // namespace orderpay::http
