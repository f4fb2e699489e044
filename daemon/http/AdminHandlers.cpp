#include "http/AdminHandlers.h"

#include "domain/Clock.h"
#include "domain/Queues.h"
#include "http/Json.h"
#include "http/Problem.h"
#include "http/page/StatusPage.h"
#include "logging/Log.h"

#include <Poco/Base64Encoder.h>
#include <Poco/JSON/Array.h>
#include <Poco/NumberParser.h>
#include <Poco/SHA2Engine.h>
#include <Poco/URI.h>

#include <sstream>

namespace orderpay::http {
namespace {

Poco::JSON::Object::Ptr deadLetterObject(const DeadLetter& d)
{
    Poco::JSON::Object::Ptr o = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
    o->set("id", "dl_" + std::to_string(d.id));
    o->set("queue", d.queue);
    if (!d.orderId.empty()) o->set("order_id", d.orderId);
    if (!d.paymentId.empty()) o->set("payment_id", d.paymentId);
    o->set("attempts", d.attempts);
    o->set("reason", d.reason);
    o->set("dead_at", clock::rfc3339(d.deadAt));
    return o;
}

bool isQueue(const std::string& q)
{
    return q == kOrdersQueue || q == kOrderStepsQueue || q == kPaymentsQueue || q == kWebhooksQueue;
}

constexpr const char* kQueueRule = "must be one of orders, order-steps, payments, webhooks";

}  // namespace

StatusHandler::StatusHandler(Service& service, std::string route, bool stream)
    : ApiHandler(service, std::move(route), Access::Admin), stream_(stream)
{
}

void StatusHandler::handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse& response)
{
    if (!stream_) return sendJson(response, 200, service_.status.current());
    // Until the client goes: no length, the connection closes at the end.
    response.setStatusAndReason(Poco::Net::HTTPResponse::HTTP_OK);
    response.setContentType("text/event-stream");
    response.set("Cache-Control", "no-store");
    response.setKeepAlive(false);
    response.send() << "event: status\ndata: " << service_.status.current() << "\n\n";
    streamAfterAnswer();
}

DeadLettersHandler::DeadLettersHandler(Service& service, std::string route, Action action, std::string id)
    : ApiHandler(service, std::move(route), Access::Admin), action_(action), id_(std::move(id))
{
}

std::int64_t DeadLettersHandler::parseId(const std::string& id)
{
    if (id.size() < 4 || id.size() > 22 || id.compare(0, 3, "dl_") != 0) return 0;
    Poco::Int64 n = 0;
    for (std::size_t i = 3; i < id.size(); ++i)
        if (id[i] < '0' || id[i] > '9') return 0;
    if (!Poco::NumberParser::tryParse64(id.substr(3), n) || n <= 0) return 0;
    return n;
}

void DeadLettersHandler::handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response)
{
    switch (action_) {
    case Action::List: return list(request, response);
    case Action::Get: {
        const std::int64_t id = parseId(id_);
        const auto d = id > 0 ? service_.admin.deadLetter(id) : std::nullopt;
        if (!d) throw ProblemException(Problem::notFound("dead letter " + id_ + " does not exist (or was replayed)"));
        return sendJson(response, 200, toText(deadLetterObject(*d)));
    }
    case Action::Replay: {
        const std::int64_t id = parseId(id_);
        if (id <= 0) throw ProblemException(Problem::notFound("dead letter " + id_ + " does not exist"));
        const auto before = service_.admin.deadLetter(id);
        if (!before) throw ProblemException(Problem::notFound("dead letter " + id_ + " does not exist (or was replayed)"));
        answerWhenDone(
            [d = *before](Poco::Net::HTTPServerResponse& r) {
                static Poco::Logger& log = Poco::Logger::get("orderpay.admin");
                Fields fields{{"QUEUE", d.queue}};
                if (!d.orderId.empty()) fields.emplace_back("ORDER_ID", d.orderId);
                if (!d.paymentId.empty()) fields.emplace_back("PAYMENT_ID", d.paymentId);
                logLine(log, Poco::Message::PRIO_NOTICE,
                        "dead letter dl_" + std::to_string(d.id) + " replayed (" +
                            (d.orderId.empty() ? d.paymentId : d.orderId) + ")",
                        fields);
                auto o = deadLetterObject(d);
                o->set("replayed", true);
                sendJson(r, 202, toText(o));
            },
            [&](AdminStore::Done then) { service_.admin.replay(id, std::move(then)); });
        return;
    }
    case Action::ReplayAll: return replayAll(request);
    }
}

void DeadLettersHandler::list(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response)
{
    const Poco::URI::QueryParameters params = queryParameters(request.getURI());
    std::string queue;
    int limit = 50;
    std::int64_t after = 0;
    std::string afterText;
    std::vector<FieldError> errors;
    for (const auto& [name, value] : params) {
        if (name == "queue" && !value.empty()) {
            if (!isQueue(value)) errors.push_back({"queue", kQueueRule});
            else queue = value;
        } else if (name == "limit") {
            if (!Poco::NumberParser::tryParse(value, limit) || limit < 1 || limit > 200)
                errors.push_back({"limit", "must be an integer from 1 to 200"});
        } else if (name == "after" && !value.empty()) {
            after = parseId(value);
            if (after <= 0) errors.push_back({"after", "must be a dead letter id (dl_...)"});
            afterText = value;
        }
    }
    if (!errors.empty()) throw ProblemException(Problem::validation(std::move(errors)));
    auto found = service_.admin.deadLetters(queue, limit + 1, after);
    const bool more = static_cast<int>(found.size()) > limit;
    if (more) found.resize(static_cast<std::size_t>(limit));
    Poco::JSON::Object::Ptr body = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
    Poco::JSON::Array::Ptr list = new Poco::JSON::Array;
    for (const auto& d : found) list->add(deadLetterObject(d));
    body->set("dead_letters", list);
    if (more) {
        std::string next = "/dead-letters?limit=" + std::to_string(limit);
        if (!queue.empty()) next += "&queue=" + queue;
        next += "&after=dl_" + std::to_string(found.back().id);
        body->set("next", next);
    } else {
        body->set("next", Poco::Dynamic::Var());
    }
    sendJson(response, 200, toText(body));
}

void DeadLettersHandler::replayAll(Poco::Net::HTTPServerRequest& request)
{
    const std::string text = readBody(request, service_.settings.http.maxBodyBytes);
    DeadLetterFilter filter;
    bool dryRun = false;
    std::vector<FieldError> errors;
    if (!text.empty()) {
        const Poco::Dynamic::Var parsed = parseJson(text);
        if (parsed.type() != typeid(Poco::JSON::Object::Ptr))
            throw ProblemException(Problem::validation({{"", "the body must be a JSON object"}}));
        const auto o = parsed.extract<Poco::JSON::Object::Ptr>();
        for (const auto& name : o->getNames()) {
            const Poco::Dynamic::Var v = o->get(name);
            if (name == "queue") {
                if (!v.isString() || !isQueue(v.toString())) errors.push_back({"queue", kQueueRule});
                else filter.queue = v.toString();
            } else if (name == "reason_contains") {
                if (!v.isString() || v.toString().size() > 1000)
                    errors.push_back({"reason_contains", "must be a string of at most 1000 characters"});
                else filter.reasonContains = v.toString();
            } else if (name == "dry_run") {
                if (!v.isBoolean()) errors.push_back({"dry_run", "must be true or false"});
                else dryRun = v.extract<bool>();
            } else {
                errors.push_back({name, "is not a field of a replay (queue, reason_contains, dry_run)"});
            }
        }
    }
    if (!errors.empty()) throw ProblemException(Problem::validation(std::move(errors)));
    auto counts = std::make_shared<AdminStore::Replayed>();
    answerWhenDone(
        [counts, filter, dryRun](Poco::Net::HTTPServerResponse& r) {
            if (!dryRun && counts->replayed > 0) {
                static Poco::Logger& log = Poco::Logger::get("orderpay.admin");
                logLine(log, Poco::Message::PRIO_NOTICE,
                        std::to_string(counts->replayed) + " of " + std::to_string(counts->matched) +
                            " dead letters replayed" + (filter.queue.empty() ? "" : " (queue " + filter.queue + ")"),
                        {});
            }
            Poco::JSON::Object::Ptr body = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
            body->set("matched", counts->matched);
            body->set("replayed", counts->replayed);
            sendJson(r, 200, toText(body));
        },
        [&](AdminStore::Done then) {
            service_.admin.replayAll(filter, dryRun, [counts, then](AdminStore::Replayed n, std::exception_ptr error) {
                *counts = n;
                then(error);
            });
        });
}

PageHandler::PageHandler(Service& service) : ApiHandler(service, "/", Access::Open) {}

std::string PageHandler::policyFor(const std::string& html)
{
    auto hashOf = [&](const std::string& open, const std::string& close) {
        const auto start = html.find(open);
        if (start == std::string::npos) return std::string("'none'");
        const auto from = start + open.size();
        const auto end = html.find(close, from);
        Poco::SHA2Engine sha(Poco::SHA2Engine::SHA_256);
        sha.update(html.substr(from, end == std::string::npos ? std::string::npos : end - from));
        const auto& digest = sha.digest();
        std::ostringstream b64;
        {
            Poco::Base64Encoder encoder(b64);
            encoder.rdbuf()->setLineLength(0);
            encoder.write(reinterpret_cast<const char*>(digest.data()), static_cast<std::streamsize>(digest.size()));
            encoder.close();
        }
        return "'sha256-" + b64.str() + "'";
    };
    return "default-src 'none'; script-src " + hashOf("<script>", "</script>") + "; style-src " +
           hashOf("<style>", "</style>") +
           "; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
}

void PageHandler::handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse& response)
{
    static const std::string html(page::statusPage());
    static const std::string policy = policyFor(html);
    response.setStatusAndReason(Poco::Net::HTTPResponse::HTTP_OK);
    response.setContentType("text/html; charset=utf-8");
    response.set("Content-Security-Policy", policy);
    response.set("X-Content-Type-Options", "nosniff");
    response.set("Referrer-Policy", "no-referrer");
    response.set("Cache-Control", "no-cache");
    response.setContentLength(static_cast<std::streamsize>(html.size()));
    response.send() << html;
}

}  // namespace orderpay::http
