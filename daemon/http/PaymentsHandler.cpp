#include "http/PaymentsHandler.h"

#include "domain/Clock.h"
#include "domain/Errors.h"
#include "domain/Ids.h"
#include "domain/Validation.h"
#include "http/Idempotency.h"
#include "http/Json.h"
#include "http/Problem.h"
#include "logging/Log.h"

namespace orderpay::http {

PaymentsHandler::PaymentsHandler(Service& service, std::string route, Action action, std::string id)
    : ApiHandler(service, std::move(route), Access::Client), action_(action), id_(std::move(id))
{
}

void PaymentsHandler::handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response)
{
    if (action_ == Action::Get) {
        auto payment = ids::isValid(id_, "pay_") ? service_.store.getPayment(id_) : std::nullopt;
        if (!payment) throw ProblemException(Problem::notFound("payment " + id_ + " does not exist"));
        return sendJson(response, 200, paymentJson(*payment));
    }

    const std::string body = readBody(request, service_.settings.http.maxBodyBytes);
    const auto validated = validatePayment(parseJson(body));
    if (!validated.value) throw ProblemException(Problem::validation(validated.errors));
    auto idem = idempotencyFor(request, body, service_.settings.http.idempotencyTtl);

    const NewPayment& in = *validated.value;
    Payment payment;
    payment.id = ids::newPaymentId();
    payment.orderId = in.orderId;
    payment.status = PaymentStatus::Queued;
    payment.amount = in.amount;
    payment.currency = in.currency;
    payment.method = in.method;
    payment.reference = in.reference;
    payment.createdAt = payment.updatedAt = clock::nowRfc3339();

    StoredAnswer answer{202, "/payments/" + payment.id, paymentJson(payment)};
    if (idem) idem->answer = answer;
    // An id of the wrong shape cannot name an order; the store would say
    // the same, this just saves the write.
    if (!ids::isValid(payment.orderId, "ord_") && !idem) {
        throw NotFound("order " + payment.orderId + " does not exist");
    }
    auto accepted = [id = payment.id, orderId = payment.orderId, amount = payment.amount, currency = payment.currency,
                     method = payment.method] {
        static Poco::Logger& log = Poco::Logger::get("orderpay.payments");
        logLine(log, Poco::Message::PRIO_INFORMATION,
                "payment " + id + " accepted for order " + orderId + ": " + std::to_string(amount) + " " + currency +
                    " by " + method,
                {{"ORDER_ID", orderId}, {"PAYMENT_ID", id}});
    };
    answerWhenWritten(std::move(answer), std::move(accepted), [&](ApiStore::Written then) {
        service_.store.createPayment(std::move(payment), std::move(idem), std::move(then));
    });
}

}  // namespace orderpay::http
