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
/// whole request head has arrived; connections that do not complete their
/// head within http.read_timeout are closed (408). Between keep-alive
/// requests a connection goes back to the gate, so idle clients hold no
/// thread either. Request parsing, the handlers and error answers stay
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
    };
    enum class Head { Incomplete, Complete, Closed };

    void gateLoop();
    void workerLoop();
    void accept();
    void examine(const Poco::Net::StreamSocket& socket);
    void expire();
    void park(const Poco::Net::StreamSocket& socket);
    void dispatch(const Poco::Net::StreamSocket& socket);
    void serve(Poco::Net::StreamSocket socket);
    static Head peekHead(const Poco::Net::StreamSocket& socket);
    static void refuse(Poco::Net::StreamSocket& socket, int status, const std::string& detail);

    Router router_;
    const HttpSettings settings_;
    Poco::Net::HTTPServerParams::Ptr params_;
    Poco::Net::ServerSocket listener_;
    std::uint16_t port_ = 0;

    Poco::Net::PollSet pollSet_;
    std::mutex waitingMutex_;
    std::map<poco_socket_t, Waiting> waiting_;  // connections the gate watches

    std::mutex queueMutex_;
    std::condition_variable queueReady_;
    std::deque<Poco::Net::StreamSocket> ready_;  // whole head received, waiting for a worker

    std::atomic<bool> stopping_{false};
    std::thread gate_;
    std::vector<std::thread> workers_;
};

}  // namespace orderpay::http
