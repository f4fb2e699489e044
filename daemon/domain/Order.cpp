#include "domain/Order.h"

#include <array>
#include <utility>

namespace orderpay {
namespace {

constexpr std::array<std::pair<OrderStatus, std::string_view>, 6> kOrderNames{{
    {OrderStatus::Queued, "queued"},
    {OrderStatus::Processing, "processing"},
    {OrderStatus::AwaitingPayment, "awaiting_payment"},
    {OrderStatus::Paid, "paid"},
    {OrderStatus::Failed, "failed"},
    {OrderStatus::Cancelled, "cancelled"},
}};

constexpr std::array<std::pair<PaymentStatus, std::string_view>, 4> kPaymentNames{{
    {PaymentStatus::Queued, "queued"},
    {PaymentStatus::Processing, "processing"},
    {PaymentStatus::Succeeded, "succeeded"},
    {PaymentStatus::Rejected, "rejected"},
}};

}  // namespace

std::string_view toString(OrderStatus s)
{
    for (const auto& [value, name] : kOrderNames)
        if (value == s) return name;
    return "unknown";
}

std::string_view toString(PaymentStatus s)
{
    for (const auto& [value, name] : kPaymentNames)
        if (value == s) return name;
    return "unknown";
}

std::optional<OrderStatus> parseOrderStatus(std::string_view s)
{
    for (const auto& [value, name] : kOrderNames)
        if (name == s) return value;
    return std::nullopt;
}

std::optional<PaymentStatus> parsePaymentStatus(std::string_view s)
{
    for (const auto& [value, name] : kPaymentNames)
        if (name == s) return value;
    return std::nullopt;
}

bool isFinal(OrderStatus s)
{
    return s == OrderStatus::Paid || s == OrderStatus::Failed || s == OrderStatus::Cancelled;
}

bool isFinal(PaymentStatus s) { return s == PaymentStatus::Succeeded || s == PaymentStatus::Rejected; }

bool canTransition(OrderStatus from, OrderStatus to)
{
    if (isFinal(from)) return false;
    switch (to) {
    case OrderStatus::Processing: return from == OrderStatus::Queued;
    case OrderStatus::AwaitingPayment: return from == OrderStatus::Processing;
    case OrderStatus::Paid: return from == OrderStatus::AwaitingPayment;
    case OrderStatus::Failed: return true;
    case OrderStatus::Cancelled: return from == OrderStatus::Queued || from == OrderStatus::AwaitingPayment;
    case OrderStatus::Queued: return false;
    }
    return false;
}

bool canTransition(PaymentStatus from, PaymentStatus to)
{
    switch (to) {
    case PaymentStatus::Processing: return from == PaymentStatus::Queued;
    case PaymentStatus::Succeeded: return from == PaymentStatus::Processing;
    // A payment held for an order that then fails or is cancelled is
    // rejected without ever being processed.
    case PaymentStatus::Rejected: return from == PaymentStatus::Processing || from == PaymentStatus::Queued;
    case PaymentStatus::Queued: return false;
    }
    return false;
}

bool refusesPayments(OrderStatus s) { return isFinal(s); }

bool holdsPayments(OrderStatus s) { return s == OrderStatus::Queued || s == OrderStatus::Processing; }

std::optional<std::string_view> paymentRejection(const Order& order, const Payment& payment,
                                                 bool referenceAlreadySucceeded)
{
    if (order.status != OrderStatus::AwaitingPayment) return kOrderNotPayable;
    if (referenceAlreadySucceeded) return kDuplicateReference;
    if (payment.currency != order.currency) return kCurrencyMismatch;
    if (payment.amount != order.totalAmount) return kAmountMismatch;
    return std::nullopt;
}

}  // namespace orderpay
