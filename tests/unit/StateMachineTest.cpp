#include "domain/Order.h"

#include <catch2/catch.hpp>

using namespace orderpay;

TEST_CASE("order lifecycle follows SPEC.md", "[state]")
{
    using S = OrderStatus;
    CHECK(canTransition(S::Queued, S::Processing));
    CHECK(canTransition(S::Processing, S::AwaitingPayment));
    CHECK(canTransition(S::AwaitingPayment, S::Paid));
    CHECK_FALSE(canTransition(S::Queued, S::AwaitingPayment));
    CHECK_FALSE(canTransition(S::Processing, S::Paid));
    CHECK_FALSE(canTransition(S::Queued, S::Paid));

    // Any non-final state may fail.
    for (S s : {S::Queued, S::Processing, S::AwaitingPayment}) CHECK(canTransition(s, S::Failed));
    // Only queued and awaiting_payment may be cancelled.
    CHECK(canTransition(S::Queued, S::Cancelled));
    CHECK(canTransition(S::AwaitingPayment, S::Cancelled));
    CHECK_FALSE(canTransition(S::Processing, S::Cancelled));
    // Nothing leaves a final state.
    for (S from : {S::Paid, S::Failed, S::Cancelled}) {
        CHECK(isFinal(from));
        for (S to : {S::Queued, S::Processing, S::AwaitingPayment, S::Paid, S::Failed, S::Cancelled})
            CHECK_FALSE(canTransition(from, to));
    }
}

TEST_CASE("payment lifecycle follows SPEC.md", "[state]")
{
    using P = PaymentStatus;
    CHECK(canTransition(P::Queued, P::Processing));
    CHECK(canTransition(P::Processing, P::Succeeded));
    CHECK(canTransition(P::Processing, P::Rejected));
    CHECK_FALSE(canTransition(P::Queued, P::Succeeded));
    CHECK_FALSE(canTransition(P::Succeeded, P::Rejected));
    CHECK_FALSE(canTransition(P::Rejected, P::Succeeded));
}

TEST_CASE("status names round-trip", "[state]")
{
    for (auto s : {OrderStatus::Queued, OrderStatus::Processing, OrderStatus::AwaitingPayment, OrderStatus::Paid,
                   OrderStatus::Failed, OrderStatus::Cancelled})
        CHECK(parseOrderStatus(toString(s)) == s);
    CHECK_FALSE(parseOrderStatus("shipped").has_value());
    CHECK(parsePaymentStatus("succeeded") == PaymentStatus::Succeeded);
}

TEST_CASE("payment rules are checked in order", "[state]")
{
    Order order;
    order.status = OrderStatus::AwaitingPayment;
    order.currency = "EUR";
    order.totalAmount = 2500;
    Payment payment;
    payment.currency = "EUR";
    payment.amount = 2500;

    CHECK_FALSE(paymentRejection(order, payment, false).has_value());
    CHECK(paymentRejection(order, payment, true) == kDuplicateReference);
    payment.amount = 2499;
    CHECK(paymentRejection(order, payment, false) == kAmountMismatch);
    payment.currency = "USD";
    CHECK(paymentRejection(order, payment, false) == kCurrencyMismatch);
    order.status = OrderStatus::Paid;
    CHECK(paymentRejection(order, payment, false) == kOrderNotPayable);
    CHECK(refusesPayments(OrderStatus::Paid));
    CHECK(holdsPayments(OrderStatus::Processing));
    CHECK_FALSE(holdsPayments(OrderStatus::AwaitingPayment));
}
