#include "http/OrdersHandler.h"

#include "domain/Clock.h"
#include "domain/Ids.h"
#include "domain/Validation.h"
#include "http/Idempotency.h"
#include "http/Json.h"
#include "http/Problem.h"
#include "logging/Log.h"

#include <Poco/NumberParser.h>
#include <Poco/URI.h>

namespace orderpay::http {

OrdersHandler::OrdersHandler(Service& service, std::string route, Action action, std::string id)
    : ApiHandler(service, std::move(route), Access::Client), action_(action), id_(std::move(id))
{
}

void OrdersHandler::handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response)
{
    switch (action_) {
    case Action::List: return list(request, response);
    case Action::Create: return create(request);
    case Action::Get: return get(response);
    case Action::Cancel: return cancel(request, response);
    }
}

void OrdersHandler::create(Poco::Net::HTTPServerRequest& request)
{
    const std::string body = readBody(request, service_.settings.http.maxBodyBytes);
    const auto validated = validateOrder(parseJson(body), service_.settings.work.defaultCurrency);
    if (!validated.value) throw ProblemException(Problem::validation(validated.errors));
    auto idem = idempotencyFor(request, body, service_.settings.http.idempotencyTtl);

    const NewOrder& in = *validated.value;
    Order order;
    order.id = ids::newOrderId();
    order.status = OrderStatus::Queued;
    order.customer = in.customer;
    order.currency = in.currency;
    order.items = in.items;
    order.totalAmount = in.totalAmount;
    order.metadata = in.metadata;
    order.createdAt = order.updatedAt = clock::nowRfc3339();
    order.events.push_back({order.createdAt, "status", {{"status", "queued"}}});

    StoredAnswer answer{202, "/orders/" + order.id, orderJson(order, true)};
    if (idem) idem->answer = answer;
    auto accepted = [id = order.id, items = order.items.size(), total = order.totalAmount, currency = order.currency] {
        static Poco::Logger& log = Poco::Logger::get("orderpay.orders");
        if (log.information())
            logLine(log, Poco::Message::PRIO_INFORMATION,
                    "order " + id + " accepted: " + std::to_string(items) + " items, " + std::to_string(total) + " " +
                        currency,
                    {{"ORDER_ID", id}});
    };
    answerWhenWritten(std::move(answer), std::move(accepted), [&](ApiStore::Written then) {
        service_.store.createOrder(std::move(order), std::move(idem), std::move(then));
    });
}

void OrdersHandler::get(Poco::Net::HTTPServerResponse& response)
{
    auto order = ids::isValid(id_, "ord_") ? service_.store.getOrder(id_) : std::nullopt;
    if (!order) throw ProblemException(Problem::notFound("order " + id_ + " does not exist"));
    sendJson(response, 200, orderJson(*order, true));
}

void OrdersHandler::cancel(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse&)
{
    if (!ids::isValid(id_, "ord_")) throw ProblemException(Problem::notFound("order " + id_ + " does not exist"));
    // The loop goes on with other connections while the cancel commits;
    // the order is read and sent after.
    answerWhenDone(
        [this](Poco::Net::HTTPServerResponse& r) {
            const auto order = service_.store.getOrder(id_);
            if (!order) throw ProblemException(Problem::notFound("order " + id_ + " does not exist"));
            static Poco::Logger& log = Poco::Logger::get("orderpay.orders");
            logLine(log, Poco::Message::PRIO_NOTICE, "order " + id_ + " cancelled", {{"ORDER_ID", id_}});
            sendJson(r, 200, orderJson(*order, true));
        },
        [&](ApiStore::Done then) { service_.store.cancelOrder(id_, std::move(then)); });
}

ListQuery parseListQuery(const std::string& uri)
{
    const Poco::URI::QueryParameters params = queryParameters(uri);
    ListQuery query;
    std::vector<FieldError> errors;
    for (const auto& [name, value] : params) {
        if (name == "status") {
            if (value.empty()) continue;
            query.status = parseOrderStatus(value);
            if (!query.status) {
                errors.push_back({"status", "must be one of queued, processing, awaiting_payment, paid, failed, "
                                            "cancelled"});
            }
        } else if (name == "limit") {
            int n = 0;
            if (!Poco::NumberParser::tryParse(value, n) || n < 1 || n > 200) {
                errors.push_back({"limit", "must be an integer from 1 to 200"});
            } else {
                query.limit = n;
            }
        } else if (name == "after") {
            if (value.empty()) continue;
            if (!ids::isValid(value, "ord_")) errors.push_back({"after", "must be an order id"});
            else query.after = value;
        }
    }
    if (!errors.empty()) throw ProblemException(Problem::validation(std::move(errors)));
    return query;
}

void OrdersHandler::list(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response)
{
    const ListQuery query = parseListQuery(request.getURI());
    const auto& [status, limit, after] = query;
    // One more than asked tells whether there is a next page.
    auto orders = service_.store.listOrders(status, limit + 1, after);
    const bool more = static_cast<int>(orders.size()) > limit;
    if (more) orders.resize(static_cast<std::size_t>(limit));

    std::optional<std::string> next;
    if (more) {
        next = "/orders?limit=" + std::to_string(limit);
        if (status) *next += "&status=" + std::string(toString(*status));
        *next += "&after=" + orders.back().id;
    }
    sendJson(response, 200, orderListJson(orders, next));
}

}  // namespace orderpay::http
