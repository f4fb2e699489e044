#include "http/Router.h"

#include "http/ApiHandler.h"
#include "http/HealthHandler.h"
#include "http/OrdersHandler.h"
#include "http/PaymentsHandler.h"

#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/StringTokenizer.h>

#include <vector>

namespace orderpay::http {

Poco::Net::HTTPRequestHandler* Router::createRequestHandler(const Poco::Net::HTTPServerRequest& request)
{
    const std::string& uri = request.getURI();
    const std::string path = uri.substr(0, uri.find_first_of("?#"));
    std::vector<std::string> parts;
    for (const auto& p : Poco::StringTokenizer(path, "/", Poco::StringTokenizer::TOK_IGNORE_EMPTY)) parts.push_back(p);
    const std::string& method = request.getMethod();
    const bool get = method == "GET" || method == "HEAD";
    const bool post = method == "POST";
    using Orders = OrdersHandler::Action;
    using Payments = PaymentsHandler::Action;

    if (parts.size() == 1 && parts[0] == "orders") {
        if (get) return new OrdersHandler(service_, "/orders", Orders::List);
        if (post) return new OrdersHandler(service_, "/orders", Orders::Create);
        return new MethodNotAllowedHandler(service_, "/orders", "GET, POST");
    }
    if (parts.size() == 2 && parts[0] == "orders") {
        if (get) return new OrdersHandler(service_, "/orders/{id}", Orders::Get, parts[1]);
        return new MethodNotAllowedHandler(service_, "/orders/{id}", "GET");
    }
    if (parts.size() == 3 && parts[0] == "orders" && parts[2] == "cancel") {
        if (post) return new OrdersHandler(service_, "/orders/{id}/cancel", Orders::Cancel, parts[1]);
        return new MethodNotAllowedHandler(service_, "/orders/{id}/cancel", "POST");
    }
    if (parts.size() == 2 && parts[0] == "payment" && parts[1] == "confirm") {
        if (post) return new PaymentsHandler(service_, "/payment/confirm", Payments::Confirm);
        return new MethodNotAllowedHandler(service_, "/payment/confirm", "POST");
    }
    if (parts.size() == 2 && parts[0] == "payments") {
        if (get) return new PaymentsHandler(service_, "/payments/{id}", Payments::Get, parts[1]);
        return new MethodNotAllowedHandler(service_, "/payments/{id}", "GET");
    }
    if (parts.size() == 2 && parts[0] == "health" && (parts[1] == "live" || parts[1] == "ready")) {
        const std::string route = "/health/" + parts[1];
        if (get) return new HealthHandler(service_, route, parts[1] == "ready");
        return new MethodNotAllowedHandler(service_, route, "GET");
    }
    if (parts.size() == 1 && parts[0] == "metrics") {
        if (get) return new MetricsHandler(service_);
        return new MethodNotAllowedHandler(service_, "/metrics", "GET");
    }
    return new NotFoundHandler(service_);
}

}  // namespace orderpay::http
