// orders, order ID, cancel ID: the client routes, read with an operator's eye.
#include "Commands.h"

#include "Errors.h"
#include "Table.h"

#include <Poco/JSON/Array.h>

#include <algorithm>
#include <ostream>

namespace orderpayctl {
namespace {

const std::vector<std::string> kOrderStatuses = {"queued", "processing", "awaiting_payment",
                                                 "paid",   "failed",     "cancelled"};

std::string orderTotal(const Poco::JSON::Object::Ptr& o)
{
    return o->has("total_amount") ? money(o->get("total_amount"), text(o, "currency", "")) : "-";
}

// One event of an order's timeline, in words.
std::string describeEvent(const Poco::JSON::Object::Ptr& e)
{
    const std::string type = text(e, "type", "?");
    const std::string reason = text(e, "reason", "");
    const std::string because = reason.empty() ? "" : ": " + reason;
    if (type == "status") return "status " + text(e, "status") + because;
    if (type == "step_started" || type == "step_completed") {
        const std::string on = text(e, "instance", "");
        return "step " + text(e, "step") + (type == "step_started" ? " started" : " completed") +
               (on.empty() ? "" : " on " + on);
    }
    if (type == "payment") return "payment " + text(e, "payment_id") + " " + text(e, "status") + because;
    // An event type newer than this tool: show its fields rather than nothing.
    std::string s = type;
    for (const auto& [key, value] : *e)
        if (key != "type" && key != "at") s += " " + key + "=" + text(value, "null");
    return s;
}

void printOrder(const Poco::JSON::Object::Ptr& o, std::ostream& out)
{
    // "Name:" then the value, the values in one column.
    constexpr std::size_t w = sizeof("Metadata") - 1;
    auto field = [&](const std::string& name, const std::string& value) {
        out << name << ":" << std::string(w + 2 - name.size(), ' ') << value << "\n";
    };
    field("Order", text(o, "id"));
    field("Status", text(o, "status"));
    if (!text(o, "reason", "").empty()) field("Reason", text(o, "reason"));
    field("Customer", text(o, "customer"));
    field("Total", orderTotal(o));
    field("Created", text(o, "created_at"));
    field("Updated", text(o, "updated_at"));
    if (auto meta = o->getObject("metadata"); meta && meta->size() > 0) {
        std::string m;
        for (const auto& [key, value] : *meta) m += (m.empty() ? "" : ", ") + key + "=" + text(value, "");
        field("Metadata", m);
    }
    const std::string currency = text(o, "currency", "");

    if (auto items = o->getArray("items"); items && items->size() > 0) {
        out << "\nItems\n";
        Table t({"SKU", "QTY", "UNIT", "AMOUNT"}, {false, true, true, true});
        for (std::size_t i = 0; i < items->size(); ++i) {
            auto item = items->getObject(static_cast<unsigned>(i));
            if (!item) continue;
            std::string amount = "-";
            try {
                amount =
                    money(item->getValue<long long>("quantity") * item->getValue<long long>("unit_amount"), currency);
            } catch (const Poco::Exception&) {
                amount = "?"; // not integers: the API would never send it, but the row still shows
            }
            t.add({text(item, "sku"), text(item, "quantity"), money(item->get("unit_amount"), currency), amount});
        }
        t.print(out);
    }

    out << "\nPayments\n";
    auto payments = o->getArray("payments");
    if (!payments || payments->size() == 0) {
        out << "(none)\n";
    } else {
        Table t({"ID", "STATUS", "AMOUNT", "METHOD", "REFERENCE", "CREATED", "REASON"},
                {false, false, true, false, false, false, false});
        for (std::size_t i = 0; i < payments->size(); ++i) {
            auto p = payments->getObject(static_cast<unsigned>(i));
            if (!p) continue;
            t.add({text(p, "id"), text(p, "status"), money(p->get("amount"), text(p, "currency", "")),
                   text(p, "method"), text(p, "reference"), text(p, "created_at"), text(p, "reason", "")});
        }
        t.print(out);
    }

    out << "\nTimeline\n";
    auto events = o->getArray("events");
    if (!events || events->size() == 0) {
        out << "(no events)\n";
        return;
    }
    // The time between steps is what an operator looks for: where an order
    // waited, and how long each step took.
    Table t({"AT", "+PREV", "EVENT"}, {false, true, false});
    std::optional<long long> first, previous;
    for (std::size_t i = 0; i < events->size(); ++i) {
        auto e = events->getObject(static_cast<unsigned>(i));
        if (!e) continue;
        const std::string at = text(e, "at");
        const auto when = parseTimestamp(at);
        std::string delta;
        if (when && previous) delta = stepDuration(*when - *previous);
        if (when) {
            if (!first) first = when;
            previous = when;
        }
        t.add({at, delta, describeEvent(e)});
    }
    t.print(out);
    if (first && previous && *previous > *first)
        out << "(" << stepDuration(*previous - *first).substr(1) << " from the first event to the last)\n";
}

} // namespace

int ordersCommand(const Args& args, Context& ctx)
{
    CommandArgs a("orders", args, {"--status", "--limit"});
    a.atMost(0);
    const auto status = a.value("--status");
    if (status && std::find(kOrderStatuses.begin(), kOrderStatuses.end(), *status) == kOrderStatuses.end())
        a.fail("unknown status '" + *status +
               "' (one of: queued, processing, awaiting_payment, paid, failed, cancelled)");
    const auto limit = a.limit();

    std::string query;
    if (status) query += "&status=" + encode(*status);
    if (limit) query += "&limit=" + std::to_string(*limit);
    if (!query.empty()) query[0] = '?';
    const ApiResponse r = ctx.api.send("GET", "/orders" + query);
    if (ctx.json) {
        printJson(r, ctx);
        return kExitOk;
    }
    const auto doc = ctx.api.object(r);
    auto orders = doc->getArray("orders");
    if (!orders || orders->size() == 0) {
        ctx.out << (status ? "No " + *status + " orders.\n" : "No orders.\n");
        return kExitOk;
    }
    Table t({"ID", "STATUS", "TOTAL", "CUSTOMER", "CREATED", "REASON"}, {false, false, true, false, false, false});
    for (std::size_t i = 0; i < orders->size(); ++i) {
        auto o = orders->getObject(static_cast<unsigned>(i));
        if (!o) continue;
        t.add({text(o, "id"), text(o, "status"), orderTotal(o), text(o, "customer"), text(o, "created_at"),
               text(o, "reason", "")});
    }
    t.print(ctx.out);
    if (doc->has("next") && !doc->isNull("next"))
        ctx.out << "(the newest " << orders->size() << " shown; there are more: --limit takes up to 200)\n";
    return kExitOk;
}

int orderCommand(const Args& args, Context& ctx)
{
    CommandArgs a("order", args, {});
    const std::string id = a.require(0, "an order ID (orderpayctl order ord_...)");
    a.atMost(1);
    const ApiResponse r = ctx.api.send("GET", "/orders/" + encode(id));
    if (ctx.json) {
        printJson(r, ctx);
        return kExitOk;
    }
    printOrder(ctx.api.object(r), ctx.out);
    return kExitOk;
}

int cancelCommand(const Args& args, Context& ctx)
{
    CommandArgs a("cancel", args, {});
    const std::string id = a.require(0, "an order ID (orderpayctl cancel ord_...)");
    a.atMost(1);
    const ApiResponse r = ctx.api.send("POST", "/orders/" + encode(id) + "/cancel");
    if (ctx.json) {
        printJson(r, ctx);
        return kExitOk;
    }
    const auto o = ctx.api.object(r);
    ctx.out << "Cancelled " << text(o, "id", id) << " (status " << text(o, "status") << ").\n";
    // The cancel also rejected the payments that were waiting for the order.
    if (auto payments = o->getArray("payments")) {
        for (std::size_t i = 0; i < payments->size(); ++i) {
            auto p = payments->getObject(static_cast<unsigned>(i));
            if (p && text(p, "reason", "") == "order_not_payable")
                ctx.out << "Payment " << text(p, "id") << " " << text(p, "status") << " (order_not_payable).\n";
        }
    }
    return kExitOk;
}

} // namespace orderpayctl
