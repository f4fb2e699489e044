#pragma once

#include "http/Deferral.h"
#include "http/Service.h"

#include <Poco/Logger.h>
#include <Poco/Net/HTTPRequestHandler.h>

#include <chrono>
#include <exception>
#include <optional>
#include <string>
#include <vector>

namespace orderpay::http {

/// Base of every handler: checks auth, turns every exception into a
/// problem+json answer (Poco would send a bare 500 or nothing), and records
/// the request in the metrics under its route pattern.
class ApiHandler : public Poco::Net::HTTPRequestHandler {
public:
    /// Who may call the route: anyone (health, metrics, the status page),
    /// the API's clients, or the operators (see Auth).
    enum class Access { Open, Client, Admin };

    ApiHandler(Service& service, std::string route, Access access);
    void handleRequest(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) final;

    /// Where handle() defers its answer (the server gives every handler one).
    void setDeferral(Deferral* deferral) { deferral_ = deferral; }
    /// The answer sent is the head of an event stream: the server keeps
    /// the connection and sends it the status board's events (see
    /// EventLoop) until the client goes.
    bool streams() const { return streams_; }
    /// Sends what a deferred handle() answered, as handleRequest() would
    /// have, and records the request.
    void resume(Poco::Net::HTTPServerResponse& response, const Deferral::Answer& answer);

protected:
    virtual void handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) = 0;

    /// Answers a request whose write goes through the Committer once that
    /// write ended, without waiting for it (see Deferral): `write` hands
    /// the callback to the store, which calls it exactly once (if `write`
    /// throws, it has not). The answer is `fresh` when the write committed
    /// (after `accepted` ran, which logs it), the first answer again for a
    /// replayed Idempotency-Key, the problem for what it threw.
    void answerWhenWritten(StoredAnswer fresh, std::function<void()> accepted,
                           const std::function<void(ApiStore::Written)>& write);
    /// The same for a write whose answer is made after it committed:
    /// `respond` runs then, on the connection's thread (a read of what
    /// was written is fine there); what the write threw is answered instead.
    void answerWhenDone(Deferral::Answer respond, const std::function<void(ApiStore::Done)>& write);
    /// Called by handle() once it sent an event stream's head (and first event).
    void streamAfterAnswer() { streams_ = true; }

    Service& service_;

private:
    /// Answers what handle() or a deferred answer threw; `request` names
    /// the request in the log line of an unexpected error.
    void answerFailure(Poco::Net::HTTPServerResponse& response, const std::exception_ptr& error,
                       const std::string& request);
    void record(const Poco::Net::HTTPServerResponse& response) const;
    /// Marks the answer deferred (or refuses with 503 when too many wait)
    /// and returns where to hand it.
    Deferral& defer();

    std::string route_;
    Access access_;
    Deferral* deferral_ = nullptr;
    bool deferred_ = false;
    bool streams_ = false;
    std::chrono::steady_clock::time_point started_;
};

/// The end of the router: no route matched.
class NotFoundHandler : public ApiHandler {
public:
    explicit NotFoundHandler(Service& service);

protected:
    void handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override;
};

/// The path matched a route, the method did not.
class MethodNotAllowedHandler : public ApiHandler {
public:
    MethodNotAllowedHandler(Service& service, std::string route, std::string allow);

protected:
    void handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override;

private:
    std::string allow_;
};

}  // namespace orderpay::http
