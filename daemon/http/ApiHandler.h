#pragma once

#include "http/Service.h"

#include <Poco/Logger.h>
#include <Poco/Net/HTTPRequestHandler.h>

#include <string>
#include <vector>

namespace orderpay::http {

/// Base of every handler: checks auth, turns every exception into a
/// problem+json answer (Poco would send a bare 500 or nothing), and records
/// the request in the metrics under its route pattern.
class ApiHandler : public Poco::Net::HTTPRequestHandler {
public:
    ApiHandler(Service& service, std::string route, bool requiresAuth);
    void handleRequest(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) final;

protected:
    virtual void handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) = 0;

    Service& service_;

private:
    std::string route_;
    bool requiresAuth_;
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
