// webhooks list|add|remove|rotate|deliveries, against /webhook-endpoints as
// SPEC.md ("Webhooks") describes it. A daemon without those routes answers
// 404, which is said as such rather than as "Not found".
#include "Commands.h"

#include "Errors.h"
#include "Table.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/StringTokenizer.h>

#include <ostream>
#include <sstream>

namespace orderpayctl {
namespace {

const std::string kRoot = "/webhook-endpoints";

[[noreturn]] void notAvailable()
{
    throw ApiError("webhooks are not available in this orderpayd",
                   {"it answered 404 for " + kRoot + ": webhooks need a newer orderpayd"});
}

// A 404 on an endpoint's own route means either "no such endpoint" or "no
// webhooks at all"; the list route tells which.
ApiResponse send(Context& ctx, const std::string& method, const std::string& path, const std::string& body = {})
{
    ApiResponse r = ctx.api.send(method, path, body);
    if (r.status == 404 && (path == kRoot || ctx.api.send("GET", kRoot).status == 404)) notAvailable();
    return r;
}

void printJsonOrNothing(const ApiResponse& r, Context& ctx)
{
    if (r.status >= 400) ctx.api.fail(r);
    if (!r.body.empty()) printJson(r, ctx); // a DELETE may answer 204 and no body
}

// The list's array, whatever the wrapper's key ("webhook_endpoints", ...).
Poco::JSON::Array::Ptr firstArray(const Poco::Dynamic::Var& doc)
{
    if (doc.type() == typeid(Poco::JSON::Array::Ptr)) return doc.extract<Poco::JSON::Array::Ptr>();
    if (doc.type() != typeid(Poco::JSON::Object::Ptr)) return {};
    auto o = doc.extract<Poco::JSON::Object::Ptr>();
    for (const auto& [key, value] : *o)
        if (value.type() == typeid(Poco::JSON::Array::Ptr)) return value.extract<Poco::JSON::Array::Ptr>();
    return {};
}

std::string joined(const Poco::JSON::Object::Ptr& o, const std::string& key)
{
    auto a = o ? o->getArray(key) : nullptr;
    if (!a) return text(o, key);
    std::string s;
    for (std::size_t i = 0; i < a->size(); ++i) s += (s.empty() ? "" : ",") + text(a->get(static_cast<unsigned>(i)));
    return s.empty() ? "-" : s;
}

void printSecret(const Poco::JSON::Object::Ptr& o, std::ostream& out)
{
    out << "Secret:   " << text(o, "secret") << "\n"
        << "(shown only now: give it to the receiver, which checks each delivery's signature with it)\n";
}

int list(const CommandArgs& a, Context& ctx)
{
    a.atMost(1);
    const ApiResponse r = send(ctx, "GET", kRoot);
    if (ctx.json) {
        printJson(r, ctx);
        return kExitOk;
    }
    auto endpoints = firstArray(ctx.api.json(r));
    if (!endpoints || endpoints->size() == 0) {
        ctx.out << "No webhook endpoints.\n";
        return kExitOk;
    }
    Table t({"ID", "ENABLED", "EVENTS", "CREATED", "URL", "DISABLED REASON"});
    for (std::size_t i = 0; i < endpoints->size(); ++i) {
        auto e = endpoints->getObject(static_cast<unsigned>(i));
        if (!e) continue;
        t.add({text(e, "id"), text(e, "enabled"), joined(e, "events"), text(e, "created_at"), text(e, "url"),
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
    // --events a,b and --events a --events b both work; none given: the
    // daemon's default.
    if (const auto given = a.values("--events"); !given.empty()) {
        Poco::JSON::Array events;
        for (const auto& g : given)
            for (const auto& e : Poco::StringTokenizer(
                     g, ",", Poco::StringTokenizer::TOK_TRIM | Poco::StringTokenizer::TOK_IGNORE_EMPTY))
                events.add(e);
        body.set("events", events);
    }
    std::ostringstream s;
    body.stringify(s);
    const ApiResponse r = send(ctx, "POST", kRoot, s.str());
    if (ctx.json) {
        printJson(r, ctx);
        return kExitOk;
    }
    const auto e = ctx.api.object(r);
    ctx.out << "Added:    " << text(e, "id") << " " << text(e, "url", url) << "\n"
            << "Events:   " << joined(e, "events") << "\n";
    printSecret(e, ctx.out);
    return kExitOk;
}

int remove(const CommandArgs& a, Context& ctx)
{
    const std::string id = a.require(1, "a webhook endpoint ID");
    a.atMost(2);
    const ApiResponse r = send(ctx, "DELETE", kRoot + "/" + encode(id));
    if (ctx.json) {
        printJsonOrNothing(r, ctx);
        return kExitOk;
    }
    if (r.status >= 400) ctx.api.fail(r);
    ctx.out << "Removed " << id << ".\n";
    return kExitOk;
}

int rotate(const CommandArgs& a, Context& ctx)
{
    const std::string id = a.require(1, "a webhook endpoint ID");
    a.atMost(2);
    const ApiResponse r = send(ctx, "POST", kRoot + "/" + encode(id) + "/rotate", "{}");
    if (ctx.json) {
        printJson(r, ctx);
        return kExitOk;
    }
    const auto e = ctx.api.object(r);
    ctx.out << "Rotated:  " << text(e, "id", id) << "\n";
    printSecret(e, ctx.out);
    ctx.out << "(the old secret keeps signing alongside it for 24 h)\n";
    return kExitOk;
}

int deliveries(const CommandArgs& a, Context& ctx)
{
    const std::string id = a.require(1, "a webhook endpoint ID");
    a.atMost(2);
    std::string path = kRoot + "/" + encode(id) + "/deliveries";
    if (const auto limit = a.limit()) path += "?limit=" + std::to_string(*limit);
    const ApiResponse r = send(ctx, "GET", path);
    if (ctx.json) {
        printJson(r, ctx);
        return kExitOk;
    }
    const auto doc = ctx.api.object(r);
    auto list = doc->getArray("deliveries");
    if (!list || list->size() == 0) {
        ctx.out << "No deliveries.\n";
        return kExitOk;
    }
    Table t({"AT", "EVENT", "EVENT ID", "ATTEMPT", "STATUS", "MS", "ERROR"},
            {false, false, false, true, true, true, false});
    for (std::size_t i = 0; i < list->size(); ++i) {
        auto d = list->getObject(static_cast<unsigned>(i));
        if (!d) continue;
        t.add({text(d, "at"), text(d, "event_type"), text(d, "event_id"), text(d, "attempt"), text(d, "status_code"),
               text(d, "duration_ms"), text(d, "error", "")});
    }
    t.print(ctx.out);
    return kExitOk;
}

} // namespace

int webhooksCommand(const Args& args, Context& ctx)
{
    CommandArgs a("webhooks", args, {"--events", "--limit"});
    const std::string sub = a.require(0, "list, add URL, remove ID, rotate ID or deliveries ID");
    if (sub != "add" && !a.values("--events").empty()) a.fail("--events goes with 'webhooks add'");
    if (sub != "deliveries" && a.value("--limit")) a.fail("--limit goes with 'webhooks deliveries'");
    if (sub == "list") return list(a, ctx);
    if (sub == "add") return add(a, ctx);
    if (sub == "remove") return remove(a, ctx);
    if (sub == "rotate") return rotate(a, ctx);
    if (sub == "deliveries") return deliveries(a, ctx);
    a.fail("unknown webhooks command '" + sub + "' (list, add, remove, rotate, deliveries)");
}

} // namespace orderpayctl
