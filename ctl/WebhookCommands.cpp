// webhooks list|add|remove|rotate|test|deliveries: the admin routes under
// /webhook-endpoints (docs/api.md, "Webhooks"). Each prints what the daemon
// answered: an endpoint is {"id", "url", "events", "enabled",
// "disabled_reason", "created_at"}, plus "secret" in the answers of add and
// rotate (the only time the secret is shown), plus
// "previous_secret_expires_at" in rotate's.
#include "Commands.h"

#include "Errors.h"
#include "Table.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/StringTokenizer.h>

#include <algorithm>
#include <ostream>
#include <set>
#include <sstream>

namespace orderpayctl {
namespace {

const std::string kRoot = "/webhook-endpoints";

// The event types an endpoint can subscribe to (webhook.test is sent by
// `webhooks test` whatever the endpoint subscribed to).
const std::vector<std::string>& eventTypes()
{
    static const std::vector<std::string> types = {"order.processing", "order.awaiting_payment", "order.paid",
                                                   "order.failed",     "order.cancelled",        "payment.succeeded",
                                                   "payment.rejected"};
    return types;
}

std::string endpointPath(const std::string& id, const std::string& tail = {})
{
    return kRoot + "/" + encode(id) + tail;
}

// `key` of `doc`, which the daemon always sends as an array; an answer
// without it is not one this orderpayctl understands.
Poco::JSON::Array::Ptr requiredArray(const Poco::JSON::Object::Ptr& doc, const std::string& key, const ApiResponse& r)
{
    auto a = doc->getArray(key);
    if (!a)
        throw ApiError("orderpayd answered " + r.method + " " + r.path + " without the \"" + key +
                       "\" list this orderpayctl expects");
    return a;
}

// The endpoint's events as "order.paid,order.failed"; "all" when it has
// every type (what an endpoint registered without --events gets).
std::string eventsText(const Poco::JSON::Object::Ptr& e)
{
    auto a = e ? e->getArray("events") : nullptr;
    if (!a) return "-";
    std::vector<std::string> names;
    for (std::size_t i = 0; i < a->size(); ++i) names.push_back(text(a->get(static_cast<unsigned>(i))));
    std::set<std::string> distinct(names.begin(), names.end());
    if (distinct == std::set<std::string>(eventTypes().begin(), eventTypes().end())) return "all";
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : ",") + n;
    return s.empty() ? "-" : s;
}

std::string stateText(const Poco::JSON::Object::Ptr& e)
{
    const std::string enabled = text(e, "enabled");
    if (enabled == "true") return "enabled";
    if (enabled == "false") return "disabled";
    return enabled;
}

void printSecret(const Poco::JSON::Object::Ptr& o, std::ostream& out)
{
    out << "Secret:   " << text(o, "secret") << "\n"
        << "(shown only now: give it to the receiver, which checks each delivery's signature with it)\n";
}

int list(const CommandArgs& a, Context& ctx)
{
    a.atMost(1);
    const ApiResponse r = ctx.api.send("GET", kRoot);
    if (ctx.json) {
        printJson(r, ctx);
        return kExitOk;
    }
    const auto endpoints = requiredArray(ctx.api.object(r), "webhook_endpoints", r);
    if (endpoints->size() == 0) {
        ctx.out << "No webhook endpoints.\n";
        return kExitOk;
    }
    Table t({"ID", "STATE", "EVENTS", "CREATED", "URL", "DISABLED REASON"});
    for (std::size_t i = 0; i < endpoints->size(); ++i) {
        auto e = endpoints->getObject(static_cast<unsigned>(i));
        if (!e) continue;
        t.add({text(e, "id"), stateText(e), eventsText(e), text(e, "created_at"), text(e, "url"),
               text(e, "disabled_reason", "")});
    }
    t.print(ctx.out);
    return kExitOk;
}

int add(const CommandArgs& a, Context& ctx)
{
    const std::string url = a.require(1, "the receiver's URL (orderpayctl webhooks add https://...)");
    a.atMost(2);
    Poco::JSON::Object body;
    body.set("url", url);
    // --events a,b and --events a --events b both work; none given: every
    // type (the daemon's default).
    if (const auto given = a.values("--events"); !given.empty()) {
        Poco::JSON::Array events;
        std::set<std::string> seen;
        for (const auto& g : given)
            for (const auto& e : Poco::StringTokenizer(
                     g, ",", Poco::StringTokenizer::TOK_TRIM | Poco::StringTokenizer::TOK_IGNORE_EMPTY)) {
                const auto& known = eventTypes();
                if (std::find(known.begin(), known.end(), e) == known.end())
                    a.fail("'" + e +
                           "' is not an event type (order.processing, order.awaiting_payment, order.paid, "
                           "order.failed, order.cancelled, payment.succeeded, payment.rejected)");
                if (seen.insert(e).second) events.add(e);
            }
        if (events.size() == 0) a.fail("--events needs at least one event type");
        body.set("events", events);
    }
    std::ostringstream s;
    body.stringify(s);
    const ApiResponse r = ctx.api.send("POST", kRoot, s.str());
    if (ctx.json) {
        printJson(r, ctx);
        return kExitOk;
    }
    const auto e = ctx.api.object(r);
    ctx.out << "Added:    " << text(e, "id") << " " << text(e, "url", url) << "\n"
            << "Events:   " << eventsText(e) << "\n";
    printSecret(e, ctx.out);
    return kExitOk;
}

int remove(const CommandArgs& a, Context& ctx)
{
    const std::string id = a.require(1, "a webhook endpoint ID (orderpayctl webhooks remove we_...)");
    a.atMost(2);
    const ApiResponse r = ctx.api.send("DELETE", endpointPath(id));
    if (r.status >= 400) ctx.api.fail(r);
    // 204: no document, so --json prints nothing either; the exit status says it.
    if (!ctx.json) ctx.out << "Removed " << id << " (its undelivered events are dropped).\n";
    return kExitOk;
}

int rotate(const CommandArgs& a, Context& ctx)
{
    const std::string id = a.require(1, "a webhook endpoint ID (orderpayctl webhooks rotate we_...)");
    a.atMost(2);
    const ApiResponse r = ctx.api.send("POST", endpointPath(id, "/rotate"), "{}");
    if (ctx.json) {
        printJson(r, ctx);
        return kExitOk;
    }
    const auto e = ctx.api.object(r);
    ctx.out << "Rotated:  " << text(e, "id", id) << " " << text(e, "url", "") << "\n";
    printSecret(e, ctx.out);
    ctx.out << "The previous secret signs beside it until " << text(e, "previous_secret_expires_at", "?")
            << ": switch the receiver over before then.\n";
    return kExitOk;
}

int test(const CommandArgs& a, Context& ctx)
{
    const std::string id = a.require(1, "a webhook endpoint ID (orderpayctl webhooks test we_...)");
    a.atMost(2);
    const ApiResponse r = ctx.api.send("POST", endpointPath(id, "/test"), "{}");
    if (ctx.json) {
        printJson(r, ctx);
        return kExitOk;
    }
    const auto o = ctx.api.object(r);
    ctx.out << "Queued a webhook.test event " << text(o, "event_id") << " for " << id << ".\n"
            << "Its delivery shows in 'orderpayctl webhooks deliveries " << id << "'.\n";
    return kExitOk;
}

int deliveries(const CommandArgs& a, Context& ctx)
{
    const std::string id = a.require(1, "a webhook endpoint ID (orderpayctl webhooks deliveries we_...)");
    a.atMost(2);
    std::string path = endpointPath(id, "/deliveries");
    const auto limit = a.limit(100);
    if (limit) path += "?limit=" + std::to_string(*limit);
    const ApiResponse r = ctx.api.send("GET", path);
    if (ctx.json) {
        printJson(r, ctx);
        return kExitOk;
    }
    const auto doc = ctx.api.object(r);
    const auto list = requiredArray(doc, "deliveries", r);
    if (list->size() == 0) {
        ctx.out << "No deliveries to " << id << " yet.\n";
        return kExitOk;
    }
    Table t({"ID", "AT", "EVENT", "EVENT ID", "ATTEMPT", "STATUS", "MS", "ERROR"},
            {false, false, false, false, true, true, true, false});
    for (std::size_t i = 0; i < list->size(); ++i) {
        auto d = list->getObject(static_cast<unsigned>(i));
        if (!d) continue;
        t.add({text(d, "id"), text(d, "at"), text(d, "event_type"), text(d, "event_id"), text(d, "attempt"),
               text(d, "status_code"), text(d, "duration_ms"), text(d, "error", "")});
    }
    t.print(ctx.out);
    if (doc->has("next") && !doc->isNull("next"))
        ctx.out << "(the newest " << list->size() << " shown; there are more: --limit takes up to 100)\n";
    return kExitOk;
}

} // namespace

int webhooksCommand(const Args& args, Context& ctx)
{
    CommandArgs a("webhooks", args, {"--events", "--limit"});
    const std::string sub = a.require(0, "list, add URL, remove ID, rotate ID, test ID or deliveries ID");
    if (sub != "add" && !a.values("--events").empty()) a.fail("--events goes with 'webhooks add'");
    if (sub != "deliveries" && a.value("--limit")) a.fail("--limit goes with 'webhooks deliveries'");
    if (sub == "list") return list(a, ctx);
    if (sub == "add") return add(a, ctx);
    if (sub == "remove") return remove(a, ctx);
    if (sub == "rotate") return rotate(a, ctx);
    if (sub == "test") return test(a, ctx);
    if (sub == "deliveries") return deliveries(a, ctx);
    a.fail("unknown webhooks command '" + sub + "' (list, add, remove, rotate, test, deliveries)");
}

} // namespace orderpayctl
