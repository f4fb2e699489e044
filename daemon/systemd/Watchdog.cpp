#include "systemd/Watchdog.h"

#include "logging/Log.h"
#include "store/OrderStore.h"
#include "systemd/Notifier.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <pthread.h>

namespace orderpay::systemd {
namespace {

std::int64_t steadyMillis()
{
    using namespace std::chrono;
    return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace

Watchdog::Watchdog(std::string httpHost, std::uint16_t httpPort, std::vector<const ConsumerTask*> workers,
                   Broker& broker)
    : host_(httpHost == "0.0.0.0" ? "127.0.0.1" : httpHost == "::" ? "::1" : std::move(httpHost)),
      port_(httpPort),
      workers_(std::move(workers)),
      broker_(broker)
{
    // A worker polls its queue at least every half second and marks
    // progress while it sleeps through a processing step; silence for this
    // long means it is stuck.
    const auto interval = watchdogInterval();
    stallLimit_ = std::max<std::chrono::milliseconds>(
        std::chrono::seconds(3),
        interval ? std::chrono::duration_cast<std::chrono::milliseconds>(*interval * 2) : std::chrono::milliseconds(0));
}

Watchdog::~Watchdog() { stop(); }

void Watchdog::start()
{
    thread_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "watchdog");
        run();
    });
}

void Watchdog::stop()
{
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

std::string Watchdog::problem() const
{
    const std::int64_t now = steadyMillis();
    for (const ConsumerTask* w : workers_) {
        if (now - w->lastProgressMs() > stallLimit_.count()) {
            return "worker " + w->name() + " has made no progress for over " +
                   std::to_string(stallLimit_.count() / 1000) + " s";
        }
    }
    try {
        Poco::Net::HTTPClientSession session(host_, port_);
        session.setTimeout(Poco::Timespan(2, 0));
        Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_GET, "/health/live",
                                       Poco::Net::HTTPMessage::HTTP_1_1);
        session.sendRequest(request);
        Poco::Net::HTTPResponse response;
        session.receiveResponse(response).ignore(1 << 16);
        if (response.getStatus() != Poco::Net::HTTPResponse::HTTP_OK)
            return "the HTTP server answered /health/live with " + std::to_string(response.getStatus());
    } catch (const Poco::Exception& e) {
        return "the HTTP server does not answer /health/live: " + e.displayText();
    }
    return {};
}

std::string Watchdog::statusLine() const
{
    std::int64_t queued = 0, inFlight = 0;
    try {
        for (const auto& [queue, d] : broker_.depths()) {
            if (queue != kOrdersQueue) continue;
            queued = d.ready;
            inFlight = d.inFlight;
        }
    } catch (const std::exception&) {
        return std::string("queue depth unknown · broker ") + (broker_.connected() ? "connected" : "disconnected");
    }
    return "queued " + std::to_string(queued) + " · processing " + std::to_string(inFlight) + " · broker " +
           (broker_.connected() ? "connected" : "disconnected");
}

void Watchdog::run()
{
    static Poco::Logger& log = Poco::Logger::get("orderpay.systemd");
    const auto interval = watchdogInterval();
    const auto tick = interval ? std::min<std::chrono::milliseconds>(
                                     std::chrono::duration_cast<std::chrono::milliseconds>(*interval),
                                     std::chrono::seconds(2))
                               : std::chrono::milliseconds(2000);
    std::string lastStatus, lastProblem;
    auto nextFeed = std::chrono::steady_clock::now();
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        lock.unlock();
        const std::string now = statusLine();
        if (now != lastStatus) status(lastStatus = now);
        if (interval && std::chrono::steady_clock::now() >= nextFeed) {
            const std::string p = problem();
            if (p.empty()) {
                watchdog();
                nextFeed = std::chrono::steady_clock::now() + *interval;
                if (!lastProblem.empty())
                    logLine(log, Poco::Message::PRIO_NOTICE, "healthy again; feeding the systemd watchdog");
            } else if (p != lastProblem) {
                logLine(log, Poco::Message::PRIO_CRITICAL, "not feeding the systemd watchdog: " + p);
            }
            lastProblem = p;
        }
        lock.lock();
        wake_.wait_for(lock, tick, [&] { return stopping_; });
    }
}

}  // namespace orderpay::systemd
