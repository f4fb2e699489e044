#pragma once

#include "http/ApiHandler.h"

namespace orderpay::http {

/// /orders (GET list, POST create), /orders/{id} (GET) and
/// /orders/{id}/cancel (POST).
class OrdersHandler : public ApiHandler {
public:
    enum class Action { List, Create, Get, Cancel };

    OrdersHandler(Service& service, std::string route, Action action, std::string id = {});

protected:
    void handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override;

private:
    void list(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response);
    void create(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response);
    void get(Poco::Net::HTTPServerResponse& response);
    void cancel(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response);

    Action action_;
    std::string id_;
};

}  // namespace orderpay::http
