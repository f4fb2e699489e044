#pragma once

#include "http/Router.h"
#include "http/Service.h"

#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/PollSet.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace orderpay::http {

/// The HTTP front: Poco parses and answers HTTP; this class decides which
/// connection gets a thread, and when.
///
/// Poco's own HTTPServer gives each connection a thread from the moment it
/// is accepted, so connections that send nothing (or a byte a second) hold
/// every thread and starve real clients. Here a gate thread watches all
/// connections with epoll and hands one to the worker threads only once a
/// whole request - head and body - has arrived in the socket's receive
/// buffer (peeked, not read); connections that do not complete their request
/// within http.read_timeout are closed (408). Between keep-alive requests a
/// connection goes back to the gate, so idle clients hold no thread either.
/// Bodies larger than the gate waits for (over http.max_body_bytes, so
/// about to be refused with 413) are handed over with their head. A client
/// that does not take its answer within http.read_timeout (a slow reader)
/// has its connection cut by the gate, which frees the thread. A handler
/// whose write goes through the Committer defers its answer (Deferral). If
/// no other connection waits for a thread, the thread waits for the commit
/// and answers itself; else it moves on, and the answer is sent by
/// whichever worker is free once the write committed. Request parsing, the handlers and error answers stay
/// Poco's (HTTPServerSession, HTTPServerRequestImpl), with problem+json
/// for heads Poco refuses.
class HttpServer {
public:
    /// Binds at once, so a port in use fails start-up before READY.
    HttpServer(Service& service, const HttpSettings& settings);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    void start();
    /// Stops accepting; requests being answered are finished, idle
    /// connections closed.
    void stop();
    std::uint16_t port() const { return port_; }

private:
    using Clock = std::chrono::steady_clock;
    struct Waiting {
        Poco::Net::StreamSocket socket;
        Clock::time_point deadline;
        bool continued = false;  // "100 Continue" already sent for its request
    };
    class Pending;
    struct Ready {
        Poco::Net::StreamSocket socket;  // a connection whose next request is whole,
        bool continued = false;
        std::unique_ptr<Pending> answered;  // or a deferred answer to send
    };
    enum class Request { Incomplete, Complete, Closed };
    /// How answering one request left its connection.
    enum class Next { Close, KeepAlive, Deferred };
    /// The connection a worker thread is answering, and by when.
    struct Exchange {
        std::mutex mutex;
        poco_socket_t fd = POCO_INVALID_SOCKET;
        Clock::time_point deadline;
    };
    struct Watched;

    void gateLoop();
    void workerLoop(Exchange& exchange);
    void accept();
    void examine(const Poco::Net::StreamSocket& socket);
    void expire();
    void cutOverdue();
    void park(const Poco::Net::StreamSocket& socket);
    void dispatch(const Poco::Net::StreamSocket& socket, bool continued);
    /// A connection with a whole next request, back to the end of the line.
    void requeue(const Poco::Net::StreamSocket& socket);
    bool othersWaiting();
    /// A deferred answer is there and its connection let go: queued for a
    /// worker to send.
    void resume(Pending* pending);
    void serve(Ready next, Exchange& exchange);
    Next answerNext(std::unique_ptr<Pending>& pending, bool& continued, Exchange& exchange,
                    Clock::time_point deadline);
    bool sendDeferred(Pending& pending, Exchange& exchange, Clock::time_point deadline);
    /// By when the client must take an answer about to be written:
    /// http.read_timeout from now, or `inherited` while an earlier answer
    /// still sits unsent (else a slow reader could pipeline its way past it).
    Clock::time_point answerDeadline(const Poco::Net::StreamSocket& socket, Clock::time_point inherited) const;
    /// After an answer on a keep-alive connection: true if this thread goes
    /// on with its next request, false if the connection was handed back
    /// (to the line of ready connections, or to the gate).
    bool keepServing(Poco::Net::HTTPServerSession& session);
    /// Whether the first request in the socket's receive buffer is there
    /// whole. `needsContinue` is set when its head asks for "100 Continue"
    /// before the client sends the body.
    Request peekRequest(const Poco::Net::StreamSocket& socket, bool& needsContinue) const;
    static void refuse(Poco::Net::StreamSocket& socket, int status, const std::string& detail);

    Router router_;
    const HttpSettings settings_;
    Poco::Net::HTTPServerParams::Ptr params_;
    Poco::Net::ServerSocket listener_;
    std::size_t gateBodyLimit_ = 0;  // bodies up to this size are waited for in the gate
    std::uint16_t port_ = 0;

    Poco::Net::PollSet pollSet_;
    std::mutex waitingMutex_;
    std::map<poco_socket_t, Waiting> waiting_;  // connections the gate watches

    std::mutex queueMutex_;
    std::condition_variable queueReady_;
    std::deque<Ready> ready_;  // whole request received, waiting for a worker
    std::size_t deferred_ = 0;  // answers still to come (workers wait for them when stopping)

    std::atomic<bool> stopping_{false};
    std::thread gate_;
    std::vector<std::thread> workers_;
    std::vector<std::unique_ptr<Exchange>> exchanges_;  // one per worker thread
};

}  // namespace orderpay::http
