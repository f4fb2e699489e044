#pragma once

#include "domain/Order.h"
#include "http/ApiHandler.h"

#include <optional>
#include <string>

namespace orderpay::http {

/// GET /orders' query string: ?status=&limit=&after=.
struct ListQuery {
    std::optional<OrderStatus> status;
    int limit = 50;
    std::string after;  // an order id, or empty for the first page
};
/// Decodes and checks the query of `uri` (the request target). Throws
/// ProblemException: 400 if it cannot be decoded, 422 naming each bad value.
ListQuery parseListQuery(const std::string& uri);

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
    void create(Poco::Net::HTTPServerRequest& request);
    void get(Poco::Net::HTTPServerResponse& response);
    void cancel(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response);

    Action action_;
    std::string id_;
};

}  // namespace orderpay::http
