#pragma once

#include "http/ApiHandler.h"

#include <string>

namespace orderpay::http {

/// The webhook endpoints (docs/webhooks.md): register, list, one, remove,
/// rotate the secret, the delivery log, send a test event. Operator routes.
class WebhookEndpointsHandler : public ApiHandler {
public:
    enum class Action { List, Create, Get, Delete, Rotate, Deliveries, Test };
    WebhookEndpointsHandler(Service& service, std::string route, Action action, std::string id = {});

    /// The event types an endpoint may take.
    static const std::vector<std::string>& eventTypes();

protected:
    void handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override;

private:
    void create(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response);
    void deliveries(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response);
    WebhookEndpoint existing() const;

    Action action_;
    std::string id_;
};

}  // namespace orderpay::http
