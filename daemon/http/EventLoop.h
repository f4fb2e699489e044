#pragma once

#include "http/Connection.h"
#include "http/Deferral.h"
#include "http/RequestFraming.h"

#include <Poco/Net/HTTPServerParams.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace orderpay {
struct HttpSettings;
}

namespace orderpay::http {

class EventLoop;
class Router;
struct Problem;

/// The answer of a request whose write waits for its commit. The writer's
/// thread hands it to the loop that owns the connection, which sends it.
class PendingAnswer : public Deferral {
public:
    PendingAnswer(EventLoop& loop, Connection& connection) : loop_(loop), connection_(connection) {}

    bool expect() override;
    void answer(Answer answer) override;

    Connection& connection() const { return connection_; }
    const Answer& answerToSend() const { return answer_; }

    bool expected = false;
    std::string version;  // of the request, for the answer
    bool keepAlive = false;

private:
    EventLoop& loop_;
    Connection& connection_;
    Answer answer_;
};

/// What the event loops share: the handlers and the settings, and the count
/// of answers waiting for their commit (bounded by http.max_queued).
struct LoopShared {
    Router& router;
    const HttpSettings& settings;
    Poco::Net::HTTPServerParams::Ptr params;
    std::atomic<bool> stopping{false};
    std::atomic<int> awaitingCommit{0};
    /// The data of the next event for event streams (the status board's
    /// latest document): read once a second by each loop with a stream.
    std::function<std::string()> streamEvent{};
};

/// One thread that owns a set of connections: it reads them (epoll, edge
/// triggered), has Poco parse each request once it is there whole (see
/// RequestFraming), runs the handler, and sends the answer - without a
/// hand-over to another thread, except that a write's answer comes back
/// from the writer's thread once committed. No read or write ever blocks:
/// an answer the client does not take stays in memory, and the client has
/// http.read_timeout to take it, as it has to send a whole request.
class EventLoop {
public:
    EventLoop(LoopShared& shared, int index);
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    void start();
    /// A connection the acceptor accepted: this loop owns it from now on.
    void adopt(poco_socket_t fd, const Poco::Net::SocketAddress& peer);
    /// From any thread: a deferred answer is there.
    void deliver(PendingAnswer* pending);
    /// Wakes the loop to see that the server stops; it ends once every
    /// answer it owes is sent (or its client's time is up).
    void wake();
    void join();
    /// Whether one more answer may wait for its commit (http.max_queued).
    bool admit();
    /// Steady milliseconds at which the loop last went round (it does at
    /// least every kTick, busy or idle): the watchdog's sign of life.
    std::int64_t lastTick() const { return tick_.load(); }
    std::string name() const { return "http-" + std::to_string(index_ + 1); }

private:
    using Clock = std::chrono::steady_clock;

    void run();
    void takeInbox();
    /// Runs work for a connection; what it throws closes the connection.
    template <typename Work>
    void guarded(Connection& c, Work&& work);
    void onEvents(Connection& c, std::uint32_t events);
    /// Reads what the socket has (up to the receive limit).
    void readSocket(Connection& c);
    /// Serves every whole request in the connection's received bytes, as
    /// long as the connection is Reading.
    void serveReceived(Connection& c);
    void serve(Connection& c, const Framing& framing);
    void sendDeferred(PendingAnswer& pending);
    /// After an answer: sends it; the connection then waits for the
    /// client to take the rest, closes, or reads on (Reading).
    void finishAnswer(Connection& c);
    /// Writes what the kernel takes; true if all is sent.
    bool flush(Connection& c);
    /// Answers `problem` without a handler (the request never became one:
    /// not whole in time, or its framing refused) and closes after it.
    void refuse(Connection& c, const Problem& problem);
    /// Shuts the sending side after an answer that ends the connection,
    /// and reads away what the client still sends, before closing.
    void linger(Connection& c);
    void drain(Connection& c);
    void expire();
    /// Once a second: the next event to every stream; a client that does
    /// not take them (over kMaxStreamBacklog unsent) is dropped.
    void pushStreams();
    /// A stream's client sends nothing we read: read away, noticing its end.
    void discardReceived(Connection& c);
    void close(Connection& c);
    /// Stopping: closes the connections waiting for a request.
    void stopIdle();

    LoopShared& shared_;
    const int index_;
    int epoll_ = -1;
    int wakeFd_ = -1;
    std::thread thread_;
    std::atomic<std::int64_t> tick_{0};
    std::chrono::steady_clock::time_point nextStreamPush_{};
    std::size_t streams_ = 0;  // connections Streaming
    std::map<Connection*, std::unique_ptr<Connection>> connections_;
    std::vector<std::unique_ptr<Connection>> closed_;  // freed after the events that may name them

    std::mutex inboxMutex_;
    std::vector<std::pair<poco_socket_t, Poco::Net::SocketAddress>> adopted_;
    std::vector<PendingAnswer*> answered_;
    bool woken_ = false;  // a wake-up is written and not yet read
};

}  // namespace orderpay::http
