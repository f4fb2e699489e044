#include "http/WebhookHandlers.h"

#include "domain/Clock.h"
#include "domain/Ids.h"
#include "http/Json.h"
#include "http/Problem.h"
#include "logging/Log.h"
#include "webhooks/AddressPolicy.h"
#include "webhooks/Signature.h"

#include <Poco/JSON/Array.h>
#include <Poco/NumberParser.h>
#include <Poco/URI.h>

#include <algorithm>
#include <set>

namespace orderpay::http {
namespace {

constexpr std::int64_t kRotationOverlapMs = 24 * 3600 * 1000LL;

Poco::Logger& logger() { return Poco::Logger::get("orderpay.admin"); }

Poco::JSON::Object::Ptr endpointObject(const WebhookEndpoint& e)
{
    Poco::JSON::Object::Ptr o = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
    o->set("id", e.id);
    o->set("url", e.url);
    Poco::JSON::Array::Ptr events = new Poco::JSON::Array;
    for (const auto& type : e.events) events->add(type);
    o->set("events", events);
    o->set("enabled", e.enabled);
    o->set("disabled_reason", e.disabledReason ? Poco::Dynamic::Var(*e.disabledReason) : Poco::Dynamic::Var());
    o->set("created_at", e.createdAt);
    return o;
}

/// "whd_17" -> 17; 0 for anything else.
std::int64_t parseAttemptId(const std::string& id)
{
    if (id.size() < 5 || id.size() > 23 || id.compare(0, 4, "whd_") != 0) return 0;
    for (std::size_t i = 4; i < id.size(); ++i)
        if (id[i] < '0' || id[i] > '9') return 0;
    Poco::Int64 n = 0;
    if (!Poco::NumberParser::tryParse64(id.substr(4), n) || n <= 0) return 0;
    return n;
}

}  // namespace

WebhookEndpointsHandler::WebhookEndpointsHandler(Service& service, std::string route, Action action, std::string id)
    : ApiHandler(service, std::move(route), Access::Admin), action_(action), id_(std::move(id))
{
}

const std::vector<std::string>& WebhookEndpointsHandler::eventTypes()
{
    static const std::vector<std::string> types = {"order.processing", "order.awaiting_payment", "order.paid",
                                                   "order.failed",     "order.cancelled",        "payment.succeeded",
                                                   "payment.rejected"};
    return types;
}

WebhookEndpoint WebhookEndpointsHandler::existing() const
{
    auto e = ids::isValid(id_, "we_") ? service_.webhooks.endpoint(id_) : std::nullopt;
    if (!e) throw ProblemException(Problem::notFound("webhook endpoint " + id_ + " does not exist"));
    return *e;
}

void WebhookEndpointsHandler::handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response)
{
    switch (action_) {
    case Action::List: {
        Poco::JSON::Array::Ptr list = new Poco::JSON::Array;
        for (const auto& e : service_.webhooks.endpoints()) list->add(endpointObject(e));
        Poco::JSON::Object::Ptr body = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
        body->set("webhook_endpoints", list);
        return sendJson(response, 200, toText(body));
    }
    case Action::Create: return create(request, response);
    case Action::Get: return sendJson(response, 200, toText(endpointObject(existing())));
    case Action::Delete: {
        if (!ids::isValid(id_, "we_") || !service_.webhooks.removeEndpoint(id_))
            throw ProblemException(Problem::notFound("webhook endpoint " + id_ + " does not exist"));
        logLine(logger(), Poco::Message::PRIO_NOTICE, "webhook endpoint " + id_ + " removed",
                {{"WEBHOOK_ENDPOINT", id_}});
        response.setStatusAndReason(Poco::Net::HTTPResponse::HTTP_NO_CONTENT);
        response.setContentLength(0);
        response.send();
        return;
    }
    case Action::Rotate: {
        const std::string secret = webhooks::newSecret();
        const std::int64_t until = clock::nowMillis() + kRotationOverlapMs;
        const auto rotated = service_.webhooks.rotate(id_, secret, until);
        if (!rotated) throw ProblemException(Problem::notFound("webhook endpoint " + id_ + " does not exist"));
        logLine(logger(), Poco::Message::PRIO_NOTICE,
                "webhook endpoint " + id_ + ": secret rotated; the previous one signs too until " + clock::rfc3339(until),
                {{"WEBHOOK_ENDPOINT", id_}});
        auto o = endpointObject(*rotated);
        o->set("secret", secret);
        o->set("previous_secret_expires_at", clock::rfc3339(until));
        return sendJson(response, 200, toText(o));
    }
    case Action::Deliveries: return deliveries(request, response);
    case Action::Test: {
        const WebhookEndpoint e = existing();
        const std::string eventId = "evt_test_" + ids::ulid();
        service_.webhooks.queueTest(e.id, eventId);
        Poco::JSON::Object::Ptr o = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
        o->set("event_id", eventId);
        return sendJson(response, 202, toText(o));
    }
    }
}

void WebhookEndpointsHandler::create(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response)
{
    const std::string text = readBody(request, service_.settings.http.maxBodyBytes);
    const Poco::Dynamic::Var parsed = parseJson(text);
    if (parsed.type() != typeid(Poco::JSON::Object::Ptr))
        throw ProblemException(Problem::validation({{"", "the body must be a JSON object"}}));
    const auto o = parsed.extract<Poco::JSON::Object::Ptr>();
    std::vector<FieldError> errors;
    WebhookEndpoint e;
    e.events = eventTypes();
    bool hasUrl = false;
    for (const auto& name : o->getNames()) {
        const Poco::Dynamic::Var v = o->get(name);
        if (name == "url") {
            hasUrl = true;
            if (!v.isString()) {
                errors.push_back({"url", "must be a string"});
                continue;
            }
            e.url = v.toString();
            if (auto problem = webhooks::checkEndpointUrl(e.url, service_.settings.webhooks.allowPrivateNetworks))
                errors.push_back({"url", *problem});
        } else if (name == "events") {
            if (v.type() != typeid(Poco::JSON::Array::Ptr)) {
                errors.push_back({"events", "must be an array of event types"});
                continue;
            }
            const auto list = v.extract<Poco::JSON::Array::Ptr>();
            const auto& known = eventTypes();
            if (list->size() == 0) errors.push_back({"events", "must name at least one event type"});
            if (list->size() > known.size()) {
                errors.push_back({"events", "has " + std::to_string(list->size()) + " entries; there are only " +
                                                std::to_string(known.size()) + " event types"});
                continue;
            }
            e.events.clear();
            std::set<std::string> seen;
            for (std::size_t i = 0; i < list->size(); ++i) {
                const std::string field = "events[" + std::to_string(i) + "]";
                const Poco::Dynamic::Var item = list->get(static_cast<unsigned>(i));
                if (!item.isString()) {
                    errors.push_back({field, "must be a string"});
                } else if (std::find(known.begin(), known.end(), item.toString()) == known.end()) {
                    errors.push_back({field, "'" + item.toString().substr(0, 100) +
                                                 "' is not an event type (order.processing, order.awaiting_payment, "
                                                 "order.paid, order.failed, order.cancelled, payment.succeeded, "
                                                 "payment.rejected)"});
                } else if (!seen.insert(item.toString()).second) {
                    errors.push_back({field, "'" + item.toString() + "' is listed twice"});
                } else {
                    e.events.push_back(item.toString());
                }
            }
        } else {
            errors.push_back({name.substr(0, 100), "is not a known field (url, events)"});
        }
    }
    if (!hasUrl) errors.push_back({"url", "is required"});
    if (!errors.empty()) throw ProblemException(Problem::validation(std::move(errors)));

    e.id = "we_" + ids::ulid();
    e.secret = webhooks::newSecret();
    e.createdAt = clock::nowRfc3339();
    service_.webhooks.addEndpoint(e);
    logLine(logger(), Poco::Message::PRIO_NOTICE, "webhook endpoint " + e.id + " registered for " + e.url,
            {{"WEBHOOK_ENDPOINT", e.id}});
    auto body = endpointObject(e);
    body->set("secret", e.secret);
    response.set("Location", "/webhook-endpoints/" + e.id);
    sendJson(response, 201, toText(body));
}

void WebhookEndpointsHandler::deliveries(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response)
{
    const Poco::URI::QueryParameters params = queryParameters(request.getURI());
    int limit = 20;
    std::int64_t after = 0;
    std::vector<FieldError> errors;
    for (const auto& [name, value] : params) {
        if (name == "limit") {
            if (!Poco::NumberParser::tryParse(value, limit) || limit < 1 || limit > 100)
                errors.push_back({"limit", "must be an integer from 1 to 100"});
        } else if (name == "after" && !value.empty()) {
            after = parseAttemptId(value);
            if (after <= 0) errors.push_back({"after", "must be a delivery id (whd_...)"});
        }
    }
    if (!errors.empty()) throw ProblemException(Problem::validation(std::move(errors)));
    existing();
    auto found = service_.webhooks.attempts(id_, limit + 1, after);
    const bool more = static_cast<int>(found.size()) > limit;
    if (more) found.resize(static_cast<std::size_t>(limit));
    Poco::JSON::Array::Ptr list = new Poco::JSON::Array;
    for (const auto& a : found) {
        Poco::JSON::Object::Ptr d = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
        d->set("id", "whd_" + std::to_string(a.id));
        d->set("event_id", a.eventId);
        d->set("event_type", a.eventType);
        d->set("attempt", a.attempt);
        d->set("at", a.at);
        d->set("status_code", a.statusCode ? Poco::Dynamic::Var(*a.statusCode) : Poco::Dynamic::Var());
        d->set("error", a.error ? Poco::Dynamic::Var(*a.error) : Poco::Dynamic::Var());
        d->set("duration_ms", a.durationMs);
        list->add(d);
    }
    Poco::JSON::Object::Ptr body = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
    body->set("deliveries", list);
    body->set("next", more ? Poco::Dynamic::Var("/webhook-endpoints/" + id_ + "/deliveries?limit=" +
                                                std::to_string(limit) + "&after=whd_" + std::to_string(found.back().id))
                           : Poco::Dynamic::Var());
    sendJson(response, 200, toText(body));
}

}  // namespace orderpay::http
