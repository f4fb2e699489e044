#include "http/Router.h"

#include "http/AdminHandlers.h"
#include "http/ApiHandler.h"
#include "http/HealthHandler.h"
#include "http/OrdersHandler.h"
#include "http/OpenApiHandler.h"
#include "http/PaymentsHandler.h"
#include "http/WebhookHandlers.h"

#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/StringTokenizer.h>

#include <vector>

namespace orderpay::http {

Route route(const std::string& method, const std::string& uri)
{
    const std::string path = uri.substr(0, uri.find_first_of("?#"));
    std::vector<std::string> parts;
    for (const auto& p : Poco::StringTokenizer(path, "/", Poco::StringTokenizer::TOK_IGNORE_EMPTY)) parts.push_back(p);
    const bool get = method == "GET" || method == "HEAD";
    const bool post = method == "POST";
    using T = Route::Target;
    auto either = [](bool allowed, T target, std::string pattern, std::string allow, std::string id = {}) {
        if (allowed) return Route{target, std::move(pattern), std::move(id), {}};
        return Route{T::MethodNotAllowed, std::move(pattern), {}, std::move(allow)};
    };

    if (parts.size() == 1 && parts[0] == "orders") {
        if (post) return Route{T::CreateOrder, "/orders", {}, {}};
        return either(get, T::ListOrders, "/orders", "GET, POST");
    }
    if (parts.size() == 2 && parts[0] == "orders") return either(get, T::GetOrder, "/orders/{id}", "GET", parts[1]);
    if (parts.size() == 3 && parts[0] == "orders" && parts[2] == "cancel") {
        return either(post, T::CancelOrder, "/orders/{id}/cancel", "POST", parts[1]);
    }
    if (parts.size() == 2 && parts[0] == "payment" && parts[1] == "confirm") {
        return either(post, T::ConfirmPayment, "/payment/confirm", "POST");
    }
    if (parts.size() == 2 && parts[0] == "payments") {
        return either(get, T::GetPayment, "/payments/{id}", "GET", parts[1]);
    }
    if (parts.size() == 2 && parts[0] == "health" && (parts[1] == "live" || parts[1] == "ready")) {
        return either(get, T::Health, "/health/" + parts[1], "GET", parts[1]);
    }
    if (parts.size() == 1 && parts[0] == "metrics") return either(get, T::Metrics, "/metrics", "GET");
    if (parts.empty() && path == "/") return either(get, T::Page, "/", "GET");
    if (parts.size() == 1 && parts[0] == "status") return either(get, T::Status, "/status", "GET");
    if (parts.size() == 2 && parts[0] == "status" && parts[1] == "stream") {
        return either(get, T::StatusStream, "/status/stream", "GET");
    }
    if (!parts.empty() && parts[0] == "dead-letters") {
        if (parts.size() == 1) return either(get, T::ListDeadLetters, "/dead-letters", "GET");
        if (parts.size() == 2 && parts[1] == "replay") {
            return either(post, T::ReplayDeadLetters, "/dead-letters/replay", "POST");
        }
        if (parts.size() == 2) return either(get, T::GetDeadLetter, "/dead-letters/{id}", "GET", parts[1]);
        if (parts.size() == 3 && parts[2] == "replay") {
            return either(post, T::ReplayDeadLetter, "/dead-letters/{id}/replay", "POST", parts[1]);
        }
    }
    if (!parts.empty() && parts[0] == "webhook-endpoints") {
        if (parts.size() == 1) {
            if (post) return Route{T::CreateWebhookEndpoint, "/webhook-endpoints", {}, {}};
            return either(get, T::ListWebhookEndpoints, "/webhook-endpoints", "GET, POST");
        }
        if (parts.size() == 2) {
            const std::string pattern = "/webhook-endpoints/{id}";
            if (method == "DELETE") return Route{T::DeleteWebhookEndpoint, pattern, parts[1], {}};
            return either(get, T::GetWebhookEndpoint, pattern, "GET, DELETE", parts[1]);
        }
        if (parts.size() == 3 && parts[2] == "rotate") {
            return either(post, T::RotateWebhookSecret, "/webhook-endpoints/{id}/rotate", "POST", parts[1]);
        }
        if (parts.size() == 3 && parts[2] == "deliveries") {
            return either(get, T::ListWebhookDeliveries, "/webhook-endpoints/{id}/deliveries", "GET", parts[1]);
        }
        if (parts.size() == 3 && parts[2] == "test") {
            return either(post, T::TestWebhookEndpoint, "/webhook-endpoints/{id}/test", "POST", parts[1]);
        }
    }
    if (parts.size() == 1 && parts[0] == "openapi.json") return either(get, T::OpenApi, "/openapi.json", "GET");
    return Route{};
}

ApiHandler* Router::createRequestHandler(const Poco::Net::HTTPServerRequest& request)
{
    Route r = route(request.getMethod(), request.getURI());
    using T = Route::Target;
    using Orders = OrdersHandler::Action;
    using Payments = PaymentsHandler::Action;
    using DeadLetters = DeadLettersHandler::Action;
    using Webhooks = WebhookEndpointsHandler::Action;
    switch (r.target) {
    case T::ListOrders: return new OrdersHandler(service_, r.pattern, Orders::List);
    case T::CreateOrder: return new OrdersHandler(service_, r.pattern, Orders::Create);
    case T::GetOrder: return new OrdersHandler(service_, r.pattern, Orders::Get, r.id);
    case T::CancelOrder: return new OrdersHandler(service_, r.pattern, Orders::Cancel, r.id);
    case T::ConfirmPayment: return new PaymentsHandler(service_, r.pattern, Payments::Confirm);
    case T::GetPayment: return new PaymentsHandler(service_, r.pattern, Payments::Get, r.id);
    case T::Health: return new HealthHandler(service_, r.pattern, r.id == "ready");
    case T::Metrics: return new MetricsHandler(service_);
    case T::Status: return new StatusHandler(service_, r.pattern, false);
    case T::StatusStream: return new StatusHandler(service_, r.pattern, true);
    case T::ListDeadLetters: return new DeadLettersHandler(service_, r.pattern, DeadLetters::List);
    case T::GetDeadLetter: return new DeadLettersHandler(service_, r.pattern, DeadLetters::Get, r.id);
    case T::ReplayDeadLetter: return new DeadLettersHandler(service_, r.pattern, DeadLetters::Replay, r.id);
    case T::ReplayDeadLetters: return new DeadLettersHandler(service_, r.pattern, DeadLetters::ReplayAll);
    case T::Page: return new PageHandler(service_);
    case T::ListWebhookEndpoints: return new WebhookEndpointsHandler(service_, r.pattern, Webhooks::List);
    case T::CreateWebhookEndpoint: return new WebhookEndpointsHandler(service_, r.pattern, Webhooks::Create);
    case T::GetWebhookEndpoint: return new WebhookEndpointsHandler(service_, r.pattern, Webhooks::Get, r.id);
    case T::DeleteWebhookEndpoint: return new WebhookEndpointsHandler(service_, r.pattern, Webhooks::Delete, r.id);
    case T::RotateWebhookSecret: return new WebhookEndpointsHandler(service_, r.pattern, Webhooks::Rotate, r.id);
    case T::ListWebhookDeliveries:
        return new WebhookEndpointsHandler(service_, r.pattern, Webhooks::Deliveries, r.id);
    case T::TestWebhookEndpoint: return new WebhookEndpointsHandler(service_, r.pattern, Webhooks::Test, r.id);
    case T::OpenApi: return new OpenApiHandler(service_);
    case T::MethodNotAllowed: return new MethodNotAllowedHandler(service_, r.pattern, r.allow);
    case T::NotFound: break;
    }
    return new NotFoundHandler(service_);
}

}  // namespace orderpay::http
