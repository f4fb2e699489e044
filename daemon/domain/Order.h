#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace orderpay {

enum class OrderStatus { Queued, Processing, AwaitingPayment, Paid, Failed, Cancelled };
enum class PaymentStatus { Queued, Processing, Succeeded, Rejected };

std::string_view toString(OrderStatus s);
std::string_view toString(PaymentStatus s);
std::optional<OrderStatus> parseOrderStatus(std::string_view s);
std::optional<PaymentStatus> parsePaymentStatus(std::string_view s);

/// Final states: nothing moves an order or payment out of them.
bool isFinal(OrderStatus s);
bool isFinal(PaymentStatus s);

/// The order lifecycle: queued -> processing -> awaiting_payment
/// -> paid; any non-final state -> failed; queued or awaiting_payment ->
/// cancelled.
bool canTransition(OrderStatus from, OrderStatus to);
bool canTransition(PaymentStatus from, PaymentStatus to);

/// A payment for an order in this state is refused at once (409).
bool refusesPayments(OrderStatus s);
/// A payment for an order in this state waits until it is awaiting_payment.
bool holdsPayments(OrderStatus s);

/// Why a payment was rejected.
inline constexpr std::string_view kAmountMismatch = "amount_mismatch";
inline constexpr std::string_view kCurrencyMismatch = "currency_mismatch";
inline constexpr std::string_view kOrderNotPayable = "order_not_payable";
inline constexpr std::string_view kDuplicateReference = "duplicate_reference";
inline constexpr std::string_view kProcessingFailed = "processing_failed";

inline const std::vector<std::string_view> kPaymentMethods = {"card", "bank_transfer", "wallet", "cash"};

struct OrderItem {
    std::string sku;
    std::int64_t quantity = 0;
    std::int64_t unitAmount = 0;
};

struct Payment {
    std::string id;
    std::string orderId;
    PaymentStatus status = PaymentStatus::Queued;
    std::optional<std::string> reason;
    std::int64_t amount = 0;
    std::string currency;
    std::string method;
    std::string reference;
    std::string createdAt;
    std::string updatedAt;
};

/// One entry of an order's history; `fields` holds the type-specific
/// members (status, reason, step, payment_id) as strings.
struct OrderEvent {
    std::string at;
    std::string type;
    std::vector<std::pair<std::string, std::string>> fields;
};

struct Order {
    std::string id;
    OrderStatus status = OrderStatus::Queued;
    std::optional<std::string> reason;
    std::string customer;
    std::string currency;
    std::vector<OrderItem> items;
    std::int64_t totalAmount = 0;
    std::map<std::string, std::string> metadata;
    std::string createdAt;
    std::string updatedAt;
    std::vector<Payment> payments;
    std::vector<OrderEvent> events;
};

/// The decision for one payment against its order, in the order the
/// rules are checked; nothing means the payment succeeds.
std::optional<std::string_view> paymentRejection(const Order& order, const Payment& payment,
                                                 bool referenceAlreadySucceeded);

}  // namespace orderpay
