// status, dead-letters, replay: the operator routes (docs/api.md,
// "Operator routes"); they need the admin token when the daemon has one.
#include "Commands.h"

#include "Errors.h"
#include "Table.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/String.h>

#include <algorithm>
#include <cstdio>
#include <istream>
#include <ostream>
#include <sstream>

namespace orderpayctl {
namespace {

// The known names first, in the order an operator reads them (the lifecycle,
// the pipeline); then whatever a newer daemon added.
std::vector<std::string> orderedKeys(const Poco::JSON::Object::Ptr& o, const std::vector<std::string>& known)
{
    std::vector<std::string> keys;
    if (!o) return keys;
    for (const auto& k : known)
        if (o->has(k)) keys.push_back(k);
    for (const auto& [k, v] : *o)
        if (std::find(known.begin(), known.end(), k) == known.end()) keys.push_back(k);
    return keys;
}

std::string counts(const Poco::JSON::Object::Ptr& o, const std::vector<std::string>& known)
{
    std::string s;
    for (const auto& k : orderedKeys(o, known)) s += (s.empty() ? "" : "  ") + k + " " + text(o, k, "0");
    return s.empty() ? "-" : s;
}

std::string fixed(const Poco::JSON::Object::Ptr& o, const std::string& key, const char* format)
{
    if (!o || !o->has(key) || o->isNull(key)) return "-";
    try {
        char buf[64];
        std::snprintf(buf, sizeof buf, format, o->getValue<double>(key));
        return buf;
    } catch (const Poco::Exception&) {
        return text(o, key);
    }
}

void printStatus(const Poco::JSON::Object::Ptr& s, const std::string& url, std::ostream& out)
{
    // Who answered first: behind a load balancer it may not be the one meant.
    out << "orderpayd " << text(s, "version", "?") << " on " << text(s, "instance", "?") << " at " << url;
    if (s->has("uptime_s")) {
        try {
            out << ", up " << roughDuration(s->getValue<double>("uptime_s"));
        } catch (const Poco::Exception&) {
            out << ", up ?"; // not a number: say so rather than drop it
        }
    }
    if (s->has("store") || s->has("broker"))
        out << " (" << text(s, "store", "?") << ", " << text(s, "broker", "?") << ")";
    out << "\n";

    auto health = s->getObject("health");
    const std::string overall = text(health, "status", "unknown");
    out << "Health:   " << (overall == "ok" ? overall : Poco::toUpper(overall));
    if (auto components = health ? health->getObject("components") : nullptr; components && components->size()) {
        std::string parts;
        for (const auto& k : orderedKeys(components, {"database", "broker"}))
            parts += (parts.empty() ? "" : ", ") + k + " " + text(components, k);
        out << " (" << parts << ")";
    }
    out << "\n";
    out << "Orders:   "
        << counts(s->getObject("orders"), {"queued", "processing", "awaiting_payment", "paid", "failed", "cancelled"})
        << "\n";
    out << "Payments: " << counts(s->getObject("payments"), {"queued", "processing", "succeeded", "rejected"}) << "\n";
    auto rates = s->getObject("rates");
    out << "Rates:    accepted " << fixed(rates, "accepted_per_s", "%.1f") << "/s, processed "
        << fixed(rates, "processed_per_s", "%.1f") << "/s (last minute)\n";
    if (s->has("at")) out << "At:       " << text(s, "at") << "\n";

    auto queues = s->getObject("queues");
    out << "\n";
    Table t({"QUEUE", "READY", "IN-FLIGHT", "DELAYED", "DEAD", "OLDEST"}, {false, true, true, true, true, true});
    for (const auto& name : orderedKeys(queues, {"orders", "order-steps", "payments", "webhooks"})) {
        auto q = queues->getObject(name);
        const std::string oldest = fixed(q, "oldest_ready_age_s", "%.1fs");
        t.add({name, text(q, "ready", "0"), text(q, "in_flight", "0"), text(q, "delayed", "0"), text(q, "dead", "0"),
               oldest});
    }
    t.print(out);
}

std::string subject(const Poco::JSON::Object::Ptr& d)
{
    if (d->has("order_id") && !d->isNull("order_id")) return text(d, "order_id");
    if (d->has("payment_id") && !d->isNull("payment_id")) return text(d, "payment_id");
    return "-"; // a message that could not be read names nothing
}

int replayOne(const std::string& id, Context& ctx)
{
    const ApiResponse r = ctx.api.send("POST", "/dead-letters/" + encode(id) + "/replay", "{}");
    if (ctx.json) {
        printJson(r, ctx);
        return kExitOk;
    }
    const auto d = ctx.api.object(r);
    const bool payment = d->has("payment_id") && !d->isNull("payment_id");
    ctx.out << "Replayed " << text(d, "id", id) << ": " << (payment ? "payment " : "order ") << subject(d)
            << " is queued again (queue " << text(d, "queue") << ").\n";
    return kExitOk;
}

std::string plural(long long n)
{
    return std::to_string(n) + (n == 1 ? " dead letter" : " dead letters");
}

int replayAll(const CommandArgs& a, Context& ctx)
{
    const bool dryRun = a.flag("--dry-run");
    auto body = [&](bool dry) {
        Poco::JSON::Object o;
        if (auto q = a.value("--queue")) o.set("queue", *q);
        if (auto t = a.value("--reason-contains")) o.set("reason_contains", *t);
        o.set("dry_run", dry);
        std::ostringstream s;
        o.stringify(s);
        return s.str();
    };
    auto count = [&](const Poco::JSON::Object::Ptr& o, const std::string& key) {
        try {
            return o->getValue<long long>(key);
        } catch (const Poco::Exception&) {
            return 0LL;
        }
    };

    // A person at a terminal sees how many first and says yes; a script
    // (stdin not a terminal) or --yes goes ahead.
    if (!dryRun && ctx.interactive && !a.flag("--yes")) {
        const ApiResponse previewResponse = ctx.api.send("POST", "/dead-letters/replay", body(true));
        const long long matched = count(ctx.api.object(previewResponse), "matched");
        if (matched == 0) {
            if (ctx.json)
                printJson(previewResponse, ctx); // {"matched": 0, "replayed": 0}
            else
                ctx.out << "No dead letters match: nothing to replay.\n";
            return kExitOk;
        }
        ctx.err << "Replay " << (matched == 1 ? "1 dead letter" : std::to_string(matched) + " dead letters")
                << "? [y/N] " << std::flush;
        std::string answer;
        std::getline(ctx.in, answer);
        answer = Poco::toLower(Poco::trim(answer));
        if (answer != "y" && answer != "yes") {
            ctx.err << "Nothing replayed.\n";
            return kExitOk;
        }
    }
    const ApiResponse r = ctx.api.send("POST", "/dead-letters/replay", body(dryRun));
    if (ctx.json) {
        printJson(r, ctx);
        return kExitOk;
    }
    const auto result = ctx.api.object(r);
    const long long matched = count(result, "matched");
    const long long replayed = count(result, "replayed");
    if (dryRun) {
        ctx.out << "Matched " << plural(matched) << " (dry run: nothing replayed).\n";
        return kExitOk;
    }
    ctx.out << "Matched " << plural(matched) << ", replayed " << replayed << ".\n";
    if (matched > replayed)
        ctx.out << (matched - replayed)
                << " left dead: their order was cancelled or paid meanwhile, or the message names none.\n";
    return kExitOk;
}

} // namespace

int statusCommand(const Args& args, Context& ctx)
{
    CommandArgs a("status", args, {});
    a.atMost(0);
    const ApiResponse r = ctx.api.send("GET", "/status");
    if (ctx.json) {
        printJson(r, ctx);
        return kExitOk;
    }
    printStatus(ctx.api.object(r), ctx.api.endpoint().url, ctx.out);
    return kExitOk;
}

int deadLettersCommand(const Args& args, Context& ctx)
{
    CommandArgs a("dead-letters", args, {"--queue", "--limit"});
    a.atMost(0);
    const auto queue = a.value("--queue");
    const auto limit = a.limit();
    std::string query;
    if (queue) query += "&queue=" + encode(*queue);
    if (limit) query += "&limit=" + std::to_string(*limit);
    if (!query.empty()) query[0] = '?';
    const ApiResponse r = ctx.api.send("GET", "/dead-letters" + query);
    if (ctx.json) {
        printJson(r, ctx);
        return kExitOk;
    }
    const auto doc = ctx.api.object(r);
    auto list = doc->getArray("dead_letters");
    if (!list || list->size() == 0) {
        ctx.out << (queue ? "No dead letters in " + *queue + ".\n" : "No dead letters.\n");
        return kExitOk;
    }
    Table t({"ID", "QUEUE", "ORDER/PAYMENT", "ATTEMPTS", "DEAD AT", "REASON"},
            {false, false, false, true, false, false});
    for (std::size_t i = 0; i < list->size(); ++i) {
        auto d = list->getObject(static_cast<unsigned>(i));
        if (!d) continue;
        t.add(
            {text(d, "id"), text(d, "queue"), subject(d), text(d, "attempts"), text(d, "dead_at"), text(d, "reason")});
    }
    t.print(ctx.out);
    if (doc->has("next") && !doc->isNull("next"))
        ctx.out << "(the newest " << list->size() << " shown; there are more: --limit takes up to 200)\n";
    return kExitOk;
}

int replayCommand(const Args& args, Context& ctx)
{
    CommandArgs a("replay", args, {"--queue", "--reason-contains"}, {"--all", "--dry-run", "--yes"});
    if (a.flag("--all")) {
        a.atMost(0);
        return replayAll(a, ctx);
    }
    if (a.value("--queue") || a.value("--reason-contains") || a.flag("--dry-run") || a.flag("--yes"))
        a.fail("--queue, --reason-contains, --dry-run and --yes go with 'replay --all'");
    const std::string id = a.require(0, "a dead letter ID or --all (orderpayctl replay dl_12)");
    a.atMost(1);
    return replayOne(id, ctx);
}

} // namespace orderpayctl
