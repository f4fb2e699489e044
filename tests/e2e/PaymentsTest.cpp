// Payments: confirmation, the checks in their documented order, rejections,
// early payments, reads.
#include "Daemon.h"
#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <regex>

using namespace e2e;

namespace {

const std::regex kPaymentId("^pay_[0-9A-HJKMNP-TV-Z]{26}$");

// Creates an order of total 2500 EUR and waits until it awaits payment.
std::string payableOrder(const HttpClient& c, const std::string& customer)
{
    auto id = c.createOrder(orderJson(customer, {{"BOOK-42", 2, 1250}}, "EUR"));
    c.waitForOrderStatus(id, "awaiting_payment");
    return id;
}

std::string orderStatus(const HttpClient& c, const std::string& id)
{
    auto r = c.getOrder(id);
    INFO(r.describe());
    REQUIRE(r.status == 200);
    return getString(r.obj(), "status").value_or("<missing>");
}

// Posts a payment, waits for it to be rejected and checks the reason.
void expectRejected(const HttpClient& c, const std::string& body, const std::string& reason)
{
    INFO("payment " << body << " should be rejected with " << reason);
    auto pid = c.createPayment(body);
    auto p = c.waitForPaymentStatus(pid, "rejected");
    CHECK(getString(p.obj(), "reason").value_or("<none>") == reason);
}

} // namespace

TEST_CASE("A payment for an order awaiting payment succeeds and the order is paid", "[payments]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    auto orderId = payableOrder(c, "pay@example.com");

    auto r = c.postPayment(paymentJson(orderId, 2500, "EUR", "card", "psp-txn-123"));
    INFO(r.describe());
    REQUIRE(r.status == 202);
    auto p = r.obj();
    auto pid = getString(p, "id").value_or("");
    CHECK(std::regex_match(pid, kPaymentId));
    CHECK(r.header("Location") == "/payments/" + pid);
    CHECK(getString(p, "status").value_or("") == "queued");
    CHECK(getString(p, "order_id").value_or("") == orderId);
    CHECK(getInt(p, "amount").value_or(-1) == 2500);
    CHECK(getString(p, "currency").value_or("") == "EUR");
    CHECK(getString(p, "method").value_or("") == "card");
    CHECK(getString(p, "reference").value_or("") == "psp-txn-123");
    CHECK(isNull(p, "reason"));

    auto done = c.waitForPaymentStatus(pid, "succeeded");
    CHECK(isNull(done.obj(), "reason"));
    auto order = c.waitForOrderStatus(orderId, "paid").obj();

    auto payments = getArray(order, "payments");
    REQUIRE(payments);
    REQUIRE(payments->size() == 1);
    CHECK(getString(arrayObject(payments, 0), "id").value_or("") == pid);
    CHECK(getString(arrayObject(payments, 0), "status").value_or("") == "succeeded");

    auto ev = events(order);
    INFO("events: " << stringify(getArray(order, "events")));
    CHECK(countEvents(ev, "payment", "payment_id", pid) == 1);
    CHECK(countEvents(ev, "payment", "status", "succeeded") == 1);
    CHECK(countEvents(ev, "status", "status", "paid") == 1);
    checkProcessedExactlyOnce(order);
    // The payment event comes before (or with) the paid status, after awaiting_payment.
    int paymentAt = -1, paidAt = -1, awaitingAt = -1;
    for (std::size_t i = 0; i < ev.size(); ++i) {
        if (getString(ev[i], "type").value_or("") == "payment") paymentAt = static_cast<int>(i);
        if (getString(ev[i], "status").value_or("") == "paid") paidAt = static_cast<int>(i);
        if (getString(ev[i], "status").value_or("") == "awaiting_payment") awaitingAt = static_cast<int>(i);
    }
    CHECK(awaitingAt < paymentAt);
    CHECK(awaitingAt < paidAt);
}

TEST_CASE("A payment posted while the order is still processing waits and then succeeds", "[payments]")
{
    Daemon d({"orders.processing_ms=1500"});
    HttpClient c(d.port());
    auto orderId = c.createOrder(orderJson("early@example.com"));
    auto pr = c.postPayment(paymentJson(orderId, 2500, "EUR", "wallet", "psp-early"));
    INFO(pr.describe());
    REQUIRE(pr.status == 202);
    auto pid = getString(pr.obj(), "id").value_or("");
    // The payment really did arrive early.
    auto st = orderStatus(c, orderId);
    CHECK((st == "queued" || st == "processing"));

    auto p = c.waitForPaymentStatus(pid, "succeeded", 20s);
    CHECK(isNull(p.obj(), "reason"));
    auto order = c.waitForOrderStatus(orderId, "paid", 10s).obj();
    checkProcessedExactlyOnce(order);
}

TEST_CASE("A payment posted while the order is queued behind another waits for it", "[payments]")
{
    Daemon d({"orders.processing_ms=900"});
    HttpClient c(d.port());
    auto first = c.createOrder(orderJson("first@example.com"));
    auto second = c.createOrder(orderJson("second@example.com", {{"X", 1, 700}}));
    REQUIRE(orderStatus(c, second) == "queued");
    auto pid = c.createPayment(paymentJson(second, 700, "EUR", "cash", "psp-queued"));
    c.waitForPaymentStatus(pid, "succeeded", 20s);
    c.waitForOrderStatus(second, "paid", 5s);
    c.waitForOrderStatus(first, "awaiting_payment", 10s);
}

TEST_CASE("Payments with the wrong amount or currency are rejected and the order stays payable", "[payments]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    auto orderId = payableOrder(c, "mismatch@example.com");

    expectRejected(c, paymentJson(orderId, 2499, "EUR", "card", "psp-amount"), "amount_mismatch");
    CHECK(orderStatus(c, orderId) == "awaiting_payment");
    expectRejected(c, paymentJson(orderId, 2500, "USD", "card", "psp-currency"), "currency_mismatch");
    CHECK(orderStatus(c, orderId) == "awaiting_payment");
    // Currency is checked before the amount.
    expectRejected(c, paymentJson(orderId, 1, "USD", "card", "psp-both"), "currency_mismatch");
    CHECK(orderStatus(c, orderId) == "awaiting_payment");

    auto order = c.getOrder(orderId).obj();
    auto ev = events(order);
    INFO("events: " << stringify(getArray(order, "events")));
    CHECK(countEvents(ev, "payment", "status", "rejected") == 3);
    int withReason = 0;
    for (const auto& e : ev)
        if (getString(e, "type").value_or("") == "payment" &&
            getString(e, "reason").value_or("") == "amount_mismatch")
            ++withReason;
    CHECK(withReason == 1);
    CHECK(getArray(order, "payments")->size() == 3);

    // A correct payment still goes through.
    auto good = c.createPayment(paymentJson(orderId, 2500, "EUR", "bank_transfer", "psp-good"));
    c.waitForPaymentStatus(good, "succeeded");
    c.waitForOrderStatus(orderId, "paid");

    // Now the order is paid: a further payment is a conflict, not queued.
    auto again = c.postPayment(paymentJson(orderId, 2500, "EUR", "card", "psp-again"));
    requireProblem(again, 409, "/problems/conflict");
    CHECK(getArray(c.getOrder(orderId).obj(), "payments")->size() == 4);
}

TEST_CASE("A reference that already paid another order is rejected as duplicate_reference", "[payments]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    auto a = payableOrder(c, "dup-a@example.com");
    auto b = payableOrder(c, "dup-b@example.com");
    auto pa = c.createPayment(paymentJson(a, 2500, "EUR", "card", "psp-shared"));
    c.waitForPaymentStatus(pa, "succeeded");
    c.waitForOrderStatus(a, "paid");

    expectRejected(c, paymentJson(b, 2500, "EUR", "card", "psp-shared"), "duplicate_reference");
    CHECK(orderStatus(c, b) == "awaiting_payment");
    // A fresh reference pays it.
    auto pb = c.createPayment(paymentJson(b, 2500, "EUR", "card", "psp-fresh"));
    c.waitForPaymentStatus(pb, "succeeded");
    c.waitForOrderStatus(b, "paid");
}

TEST_CASE("Payments for a cancelled or unknown order are refused", "[payments][errors]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    auto id = payableOrder(c, "cancelled@example.com");
    REQUIRE(c.cancelOrder(id).status == 200);
    requireProblem(c.postPayment(paymentJson(id, 2500)), 409, "/problems/conflict");
    requireProblem(c.postPayment(paymentJson("ord_01JDQ8M4Z3X7K2N9P5R6S8T0VW", 2500)), 404,
                   "/problems/not-found");
    requireProblem(c.postPayment(paymentJson("no-such-order", 2500)), 404, "/problems/not-found");
    requireProblem(c.get("/payments/pay_01JDQ8M4Z3X7K2N9P5R6S8T0VW"), 404, "/problems/not-found");
    requireProblem(c.get("/payments/whatever"), 404, "/problems/not-found");
}

TEST_CASE("GET /payments/{id} returns the payment resource", "[payments]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    auto orderId = payableOrder(c, "read@example.com");
    auto pid = c.createPayment(paymentJson(orderId, 2500, "EUR", "bank_transfer", "psp-read-1"));
    auto r = c.waitForPaymentStatus(pid, "succeeded");
    INFO(r.describe());
    CHECK(r.contentType().rfind("application/json", 0) == 0);
    auto p = r.obj();
    CHECK(getString(p, "id").value_or("") == pid);
    CHECK(getString(p, "order_id").value_or("") == orderId);
    CHECK(getInt(p, "amount").value_or(-1) == 2500);
    CHECK(getString(p, "currency").value_or("") == "EUR");
    CHECK(getString(p, "method").value_or("") == "bank_transfer");
    CHECK(getString(p, "reference").value_or("") == "psp-read-1");
    CHECK(isNull(p, "reason"));
    CHECK(getString(p, "created_at").has_value());
    CHECK(getString(p, "updated_at").value_or("") >= getString(p, "created_at").value_or("~"));
}

TEST_CASE("POST /payment/confirm validates its body", "[payments][errors]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    auto id = payableOrder(c, "validate-pay@example.com");
    const std::string oid = quote(id);

    struct Case { std::string body; std::string field; };
    const std::vector<Case> cases = {
        {paymentJson(id, 2500, "EUR", "bitcoin", "r1"), "method"},
        {paymentJson(id, 2500, "EUR", "", "r1"), "method"},
        {paymentJson(id, 2500, "EUR", "card", ""), "reference"},
        {paymentJson(id, 2500, "EUR", "card", std::string(129, 'r')), "reference"},
        {paymentJson(id, 2500, "eur", "card", "r1"), "currency"},
        {R"({"order_id":)" + oid + R"(,"amount":25.5,"currency":"EUR","method":"card","reference":"r1"})", "amount"},
        {R"({"order_id":)" + oid + R"(,"amount":"2500","currency":"EUR","method":"card","reference":"r1"})", "amount"},
        {R"({"order_id":)" + oid + R"(,"currency":"EUR","method":"card","reference":"r1"})", "amount"},
        {R"({"amount":2500,"currency":"EUR","method":"card","reference":"r1"})", "order_id"},
        {R"({"order_id":)" + oid + R"(,"amount":2500,"currency":"EUR","method":"card"})", "reference"},
        {R"({"order_id":)" + oid + R"(,"amount":2500,"currency":"EUR","method":"card","reference":"r1","tip":5})", "tip"},
    };
    for (const auto& tc : cases) {
        INFO("body: " << tc.body);
        auto r = c.postPayment(tc.body);
        requireProblem(r, 422, "/problems/validation");
        auto fields = errorFields(r);
        INFO("fields reported: " << Catch::Detail::stringify(fields));
        CHECK(std::find(fields.begin(), fields.end(), tc.field) != fields.end());
    }
    // None of them was stored.
    CHECK(getArray(c.getOrder(id).obj(), "payments")->size() == 0);
    // A 128-character reference is fine.
    auto ok = c.postPayment(paymentJson(id, 2500, "EUR", "card", std::string(128, 'r')));
    INFO(ok.describe());
    CHECK(ok.status == 202);
}

TEST_CASE("An idempotent payment replay creates no second payment", "[payments][idempotency]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    auto orderId = payableOrder(c, "idem-pay@example.com");
    const std::string body = paymentJson(orderId, 2500, "EUR", "card", "psp-idem-pay");
    const Headers key{{"Idempotency-Key", "pay-key-1"}};
    auto first = c.postPayment(body, key);
    INFO(first.describe());
    REQUIRE(first.status == 202);
    auto pid = getString(first.obj(), "id").value_or("");
    c.waitForPaymentStatus(pid, "succeeded");
    c.waitForOrderStatus(orderId, "paid");

    // Replay after the order is paid: still the first answer, not a 409.
    auto replay = c.postPayment(body, key);
    INFO(replay.describe());
    REQUIRE(replay.status == 202);
    CHECK(replay.header("Idempotent-Replayed") == "true");
    CHECK(replay.header("Location") == first.header("Location"));
    CHECK(getString(replay.obj(), "id").value_or("") == pid);
    auto order = c.getOrder(orderId).obj();
    CHECK(getArray(order, "payments")->size() == 1);
    CHECK(countEvents(events(order), "payment") == 1);
}

TEST_CASE("A waiting payment whose order is cancelled meanwhile is rejected as order_not_payable", "[payments]")
{
    Daemon d({"orders.processing_ms=60000"});
    HttpClient c(d.port());
    auto busy = c.createOrder(orderJson("busy-pay@example.com"));
    c.waitForOrderStatus(busy, "processing", 10s);
    auto waiting = c.createOrder(orderJson("waiting-pay@example.com"));
    REQUIRE(orderStatus(c, waiting) == "queued");
    auto pid = c.createPayment(paymentJson(waiting, 2500, "EUR", "card", "psp-not-payable"));
    auto cancel = c.cancelOrder(waiting);
    INFO(cancel.describe());
    REQUIRE(cancel.status == 200);
    auto p = c.waitForPaymentStatus(pid, "rejected", 15s);
    CHECK(getString(p.obj(), "reason").value_or("<none>") == "order_not_payable");
    CHECK(orderStatus(c, waiting) == "cancelled");
}
