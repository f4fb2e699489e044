#pragma once

#include "http/ApiHandler.h"
#include "http/Service.h"

#include <Poco/Net/HTTPRequestHandlerFactory.h>

#include <string>

namespace orderpay::http {

/// Where a request goes, decided from its method and request target alone
/// (a free function, so the fuzzer and unit tests reach it without a server).
struct Route {
    enum class Target {
        ListOrders,
        CreateOrder,
        GetOrder,
        CancelOrder,
        ConfirmPayment,
        GetPayment,
        Health,
        Metrics,
        Status,
        StatusStream,
        ListDeadLetters,
        GetDeadLetter,
        ReplayDeadLetter,
        ReplayDeadLetters,
        Page,
        ListWebhookEndpoints,
        CreateWebhookEndpoint,
        GetWebhookEndpoint,
        DeleteWebhookEndpoint,
        RotateWebhookSecret,
        ListWebhookDeliveries,
        TestWebhookEndpoint,
        OpenApi,
        MethodNotAllowed,
        NotFound,
    };
    Target target = Target::NotFound;
    std::string pattern;  // as the metrics name it ("/orders/{id}"); empty for NotFound
    std::string id;       // the {id} segment, or "live"/"ready" for Health
    std::string allow;    // the Allow header of MethodNotAllowed
};
Route route(const std::string& method, const std::string& uri);

/// Maps method and path to a handler. Tried in order; a path that matches
/// with the wrong method gets 405 with Allow, anything else 404 (Poco's
/// own default would be 501).
class Router : public Poco::Net::HTTPRequestHandlerFactory {
public:
    explicit Router(Service& service) : service_(service) {}
    ApiHandler* createRequestHandler(const Poco::Net::HTTPServerRequest& request) override;

private:
    Service& service_;
};

}  // namespace orderpay::http
