#include "Check.h"

#include "domain/Ids.h"
#include "http/OrdersHandler.h"
#include "http/Router.h"

#include <set>

namespace orderpay::fuzz {
namespace {

const std::set<std::string> kPatterns = {"/orders",
                                         "/orders/{id}",
                                         "/orders/{id}/cancel",
                                         "/payment/confirm",
                                         "/payments/{id}",
                                         "/health/live",
                                         "/health/ready",
                                         "/metrics",
                                         "/",
                                         "/openapi.json",
                                         "/status",
                                         "/status/stream",
                                         "/dead-letters",
                                         "/dead-letters/{id}",
                                         "/dead-letters/{id}/replay",
                                         "/dead-letters/replay",
                                         "/webhook-endpoints",
                                         "/webhook-endpoints/{id}",
                                         "/webhook-endpoints/{id}/rotate",
                                         "/webhook-endpoints/{id}/deliveries",
                                         "/webhook-endpoints/{id}/test"};

void checkRoute(const std::string& method, const std::string& uri, const http::Route& r)
{
    using T = http::Route::Target;
    const std::string what = method + " " + uri + " -> " + r.pattern;
    if (r.target == T::NotFound) {
        check(r.pattern.empty() && r.id.empty() && r.allow.empty(), "a NotFound route with details: " + what);
        // What NotFoundHandler answers: the request target goes back verbatim.
        checkProblem(http::Problem::notFound("no resource at " + uri));
        return;
    }
    check(kPatterns.count(r.pattern) == 1, "an unknown route pattern: " + what);
    const std::string path = uri.substr(0, uri.find_first_of("?#"));
    if (r.target == T::MethodNotAllowed) {
        check(!r.allow.empty() && r.id.empty(), "405 without Allow: " + what);
        const std::string asked = method == "HEAD" ? "GET" : method;
        check((", " + r.allow + ", ").find(", " + asked + ", ") == std::string::npos,
              "405 for a method it allows: " + what);
        checkProblem(http::Problem::methodNotAllowed(r.allow));
        return;
    }
    check(r.allow.empty(), "Allow on a matched route: " + what);
    const bool hasId = r.pattern.find("{id}") != std::string::npos;
    if (hasId) {
        check(!r.id.empty() && r.id.find('/') == std::string::npos, "a bad {id}: " + what + " id=" + r.id);
        check(path.find("/" + r.id) != std::string::npos, "an {id} that is not in the path: " + what);
    }
    const bool isGet = method == "GET" || method == "HEAD";
    const bool isPost = method == "POST";
    switch (r.target) {
    case T::ListOrders:
    case T::GetOrder:
    case T::GetPayment:
    case T::Health:
    case T::Metrics:
    case T::Status:
    case T::StatusStream:
    case T::ListDeadLetters:
    case T::GetDeadLetter:
    case T::Page:
    case T::OpenApi:
    case T::ListWebhookEndpoints:
    case T::GetWebhookEndpoint:
    case T::ListWebhookDeliveries: check(isGet, "a read route for " + what); break;
    case T::CreateOrder:
    case T::CancelOrder:
    case T::ConfirmPayment:
    case T::ReplayDeadLetter:
    case T::ReplayDeadLetters:
    case T::CreateWebhookEndpoint:
    case T::RotateWebhookSecret:
    case T::TestWebhookEndpoint: check(isPost, "a write route for " + what); break;
    case T::DeleteWebhookEndpoint: check(method == "DELETE", "a delete route for " + what); break;
    case T::MethodNotAllowed:
    case T::NotFound: break;
    }
}

void checkListQuery(const std::string& uri)
{
    try {
        const http::ListQuery q = http::parseListQuery(uri);
        check(q.limit >= 1 && q.limit <= 200, "limit " + std::to_string(q.limit) + " from " + uri);
        check(q.after.empty() || ids::isValid(q.after, "ord_"), "after=" + q.after + " from " + uri);
    } catch (const http::ProblemException& e) {
        check(e.problem.status == 400 || e.problem.status == 422,
              "the query " + uri + " answered " + std::to_string(e.problem.status));
        checkProblem(e.problem);
    }
}

}  // namespace

void routing(std::string_view input)
{
    const auto nl = input.find('\n');
    const std::string method(nl == std::string_view::npos ? std::string_view("GET") : input.substr(0, nl));
    const std::string uri(nl == std::string_view::npos ? input : input.substr(nl + 1));
    const http::Route r = http::route(method, uri);
    checkRoute(method, uri, r);
    // The query is parsed for GET /orders only, but any target must be safe
    // to parse: the fuzzer should not have to find the path first.
    checkListQuery(uri);
}

}  // namespace orderpay::fuzz
