#pragma once

#include "http/ApiHandler.h"

#include <cstdint>
#include <string>

namespace orderpay::http {

/// GET /status (the document made now) and GET /status/stream (server-sent
/// events: the first at once, then the event loop sends the status board's
/// latest document every second for as long as the client listens).
class StatusHandler : public ApiHandler {
public:
    StatusHandler(Service& service, std::string route, bool stream);

protected:
    void handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override;

private:
    bool stream_;
};

/// The dead letters: list, one, replay one, replay what a filter takes.
class DeadLettersHandler : public ApiHandler {
public:
    enum class Action { List, Get, Replay, ReplayAll };
    DeadLettersHandler(Service& service, std::string route, Action action, std::string id = {});

    /// "dl_17" -> 17; 0 for anything else.
    static std::int64_t parseId(const std::string& id);

protected:
    void handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override;

private:
    void list(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response);
    void replayAll(Poco::Net::HTTPServerRequest& request);

    Action action_;
    std::string id_;
};

/// GET /: the status page, one document compiled into the daemon, with a
/// Content-Security-Policy that lets it run its own script and style (by
/// their hashes) and connect to this daemon only.
class PageHandler : public ApiHandler {
public:
    explicit PageHandler(Service& service);

    /// The policy for the page's text: its one <script> and one <style>,
    /// each allowed by the SHA-256 of its content.
    static std::string policyFor(const std::string& html);

protected:
    void handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override;
};

}  // namespace orderpay::http
