#include "Check.h"

#include "domain/Money.h"
#include "domain/Validation.h"
#include "http/Json.h"
#include "store/JsonText.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>

#include <algorithm>

namespace orderpay::fuzz {
namespace {

void checkOrder(const NewOrder& o)
{
    check(utf8Length(o.customer) >= 1 && utf8Length(o.customer) <= 200, "customer out of bounds: " + o.customer);
    check(isCurrencyCode(o.currency), "accepted currency " + o.currency);
    check(!o.items.empty() && o.items.size() <= 100, "accepted " + std::to_string(o.items.size()) + " items");
    std::int64_t total = 0;
    for (const auto& item : o.items) {
        check(isSku(item.sku), "accepted sku " + item.sku);
        check(item.quantity >= 1 && item.quantity <= 10000, "accepted quantity " + std::to_string(item.quantity));
        check(item.unitAmount >= 0 && item.unitAmount <= money::kMaxUnitAmount,
              "accepted unit_amount " + std::to_string(item.unitAmount));
        total += item.quantity * item.unitAmount;  // bounded by the checks above
    }
    check(total == o.totalAmount, "total_amount " + std::to_string(o.totalAmount) + " is not the sum " +
                                      std::to_string(total));
    check(total <= money::kMaxOrderTotal, "accepted a total of " + std::to_string(total));
    check(o.metadata.size() <= 20, "accepted " + std::to_string(o.metadata.size()) + " metadata keys");
    for (const auto& [k, v] : o.metadata) {
        check(!k.empty() && k.size() <= 64 && v.size() <= 1024, "accepted metadata " + k);
    }
    // The store keeps the metadata as JSON text: it must come back as it went in.
    check(stringMapFromJson(stringMapToJson(o.metadata)) == o.metadata, "metadata changed through JSON text");

    // The 202 answer: what the client reads back must be the order it sent.
    Order order;
    order.id = "ord_01HZZZZZZZZZZZZZZZZZZZZZZZ";
    order.customer = o.customer;
    order.currency = o.currency;
    order.items = o.items;
    order.totalAmount = o.totalAmount;
    order.metadata = o.metadata;
    const std::string text = http::orderJson(order, true);
    check(isValidUtf8(text), "the rendered order is not UTF-8");
    const auto rendered = parseOurJson(text, "the rendered order").extract<Poco::JSON::Object::Ptr>();
    Poco::JSON::Object::Ptr again = new Poco::JSON::Object;
    for (const char* key : {"customer", "currency", "items", "metadata"}) again->set(key, rendered->get(key));
    const auto revalidated = validateOrder(again, "");
    check(revalidated.value.has_value(), "the rendered order does not validate again: " + text);
    const NewOrder& r = *revalidated.value;
    check(r.customer == o.customer && r.currency == o.currency && r.totalAmount == o.totalAmount &&
              r.metadata == o.metadata && r.items.size() == o.items.size(),
          "the rendered order says something else: " + text);
    for (std::size_t i = 0; i < o.items.size(); ++i) {
        check(r.items[i].sku == o.items[i].sku && r.items[i].quantity == o.items[i].quantity &&
                  r.items[i].unitAmount == o.items[i].unitAmount,
              "the rendered order has other items: " + text);
    }
}

void checkPayment(const NewPayment& p)
{
    check(utf8Length(p.orderId) >= 1 && utf8Length(p.orderId) <= 64, "accepted order_id " + p.orderId);
    check(p.amount >= 0 && p.amount <= money::kMaxOrderTotal, "accepted amount " + std::to_string(p.amount));
    check(isCurrencyCode(p.currency), "accepted currency " + p.currency);
    check(std::find(kPaymentMethods.begin(), kPaymentMethods.end(), p.method) != kPaymentMethods.end(),
          "accepted method " + p.method);
    check(utf8Length(p.reference) >= 1 && utf8Length(p.reference) <= 128, "accepted reference " + p.reference);

    Payment payment;
    payment.id = "pay_01HZZZZZZZZZZZZZZZZZZZZZZZ";
    payment.orderId = p.orderId;
    payment.amount = p.amount;
    payment.currency = p.currency;
    payment.method = p.method;
    payment.reference = p.reference;
    const std::string text = http::paymentJson(payment);
    const auto rendered = parseOurJson(text, "the rendered payment").extract<Poco::JSON::Object::Ptr>();
    check(rendered->getValue<std::string>("order_id") == p.orderId &&
              rendered->getValue<std::string>("reference") == p.reference &&
              rendered->getValue<Poco::Int64>("amount") == p.amount,
          "the rendered payment says something else: " + text);
}

/// A refusal that names a byte offset names one inside the body (or its end).
void checkOffset(const http::Problem& problem, const std::string& body)
{
    std::string text = problem.detail;
    for (const auto& e : problem.errors) text += "\n" + e.message;
    static const std::string kOffset = "byte offset ";
    for (auto at = text.find(kOffset); at != std::string::npos; at = text.find(kOffset, at + 1)) {
        const auto from = at + kOffset.size();
        const auto to = text.find_first_not_of("0123456789", from);
        const std::string digits = text.substr(from, to == std::string::npos ? std::string::npos : to - from);
        check(!digits.empty() && digits.size() < 19 && std::stoull(digits) <= body.size(),
              "byte offset '" + digits + "' in a body of " + std::to_string(body.size()) + " bytes: " + text);
    }
}

template <typename T>
void checkVerdict(const Validated<T>& v)
{
    check(v.value.has_value() == v.errors.empty(), "a value and errors, or neither");
    // A refused body is answered with its errors as problem+json.
    if (!v.value) checkProblem(http::Problem::validation(v.errors));
}

}  // namespace

void requestJson(std::string_view input)
{
    const std::string body(input);
    Poco::Dynamic::Var json;
    try {
        json = http::parseJson(body);
    } catch (const http::ProblemException& e) {
        check(e.problem.status == 400 || e.problem.status == 422,
              "parseJson refused with status " + std::to_string(e.problem.status));
        checkProblem(e.problem);
        checkOffset(e.problem, body);
        return;
    }
    check(isValidUtf8(body), "parseJson accepted a body that is not UTF-8");

    const auto order = validateOrder(json, "EUR");
    checkVerdict(order);
    if (order.value) checkOrder(*order.value);

    const auto payment = validatePayment(json);
    checkVerdict(payment);
    if (payment.value) checkPayment(*payment.value);
}

}  // namespace orderpay::fuzz
