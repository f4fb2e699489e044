#include "work/OrderProcessor.h"

#include "domain/Errors.h"
#include "domain/Ids.h"
#include "logging/Log.h"
#include "metrics/Metrics.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

namespace orderpay {
namespace {

std::string decodeId(const std::string& body, const std::string& field, const std::string& prefix)
{
    try {
        Poco::JSON::Parser parser;
        auto object = parser.parse(body).extract<Poco::JSON::Object::Ptr>();
        const std::string id = object->getValue<std::string>(field);
        if (ids::isValid(id, prefix)) return id;
    } catch (const Poco::Exception&) {
        // Falls through to the poison message below.
    }
    throw PoisonMessage("the message does not name a valid " + field + ": " + body.substr(0, 200));
}

}  // namespace

OrderProcessor::OrderProcessor(WorkStore& store, const WorkSettings& work)
    : store_(store),
      processingTime_(work.processingTime),
      batchSize_(work.batchSize()),
      log_(Poco::Logger::get("orderpay.orders"))
{
}

std::string OrderProcessor::decodeOrderId(const std::string& body) { return decodeId(body, "order_id", "ord_"); }

std::chrono::milliseconds OrderProcessor::stepTime(std::size_t index) const
{
    const auto each = processingTime_ / kSteps.size();
    if (index + 1 < kSteps.size()) return each;
    return processingTime_ - each * (kSteps.size() - 1);
}

void OrderProcessor::handle(const Delivery& d, const Sleep& sleep)
{
    const std::string id = decodeOrderId(d.body);
    const Fields fields{{"ORDER_ID", id}, {"QUEUE", d.queue}, {"MESSAGE_ID", std::to_string(d.messageId)}};
    if (processingTime_.count() == 0) {
        const auto outcome = store_.processInstantly({id}, std::vector<std::string>(kSteps.begin(), kSteps.end()));
        if (outcome.front().error) std::rethrow_exception(outcome.front().error);
        return reportInstant(d, id, outcome.front().result);
    }
    const OrderStatus status = store_.startProcessing(id);
    if (status != OrderStatus::Processing) {
        // Cancelled while queued, or a redelivery of finished work.
        logLine(log_, Poco::Message::PRIO_INFORMATION,
                "order " + id + " is " + std::string(toString(status)) + ", nothing to process", fields);
        return;
    }
    logLine(log_, Poco::Message::PRIO_INFORMATION,
            "order " + id + " processing" + (d.redelivered() ? " (redelivery " + std::to_string(d.attempt) + ")" : ""),
            fields);
    for (std::size_t i = 0; i < kSteps.size(); ++i) {
        const std::string step = kSteps[i];
        if (store_.isStepCompleted(id, step)) continue;
        store_.recordStepStarted(id, step);
        logLine(log_, Poco::Message::PRIO_INFORMATION, "order " + id + " step " + step + " started", fields);
        const auto t = stepTime(i);
        if (t.count() > 0 && sleep(t)) throw Interrupted();
        store_.completeStep(id, step);
        logLine(log_, Poco::Message::PRIO_INFORMATION, "order " + id + " step " + step + " completed", fields);
    }
    if (store_.finishProcessing(id)) {
        Metrics::instance().ordersProcessed.fetch_add(1);
        logLine(log_, Poco::Message::PRIO_NOTICE, "order " + id + " awaiting_payment", fields);
    }
}

std::vector<std::exception_ptr> OrderProcessor::handleSome(const std::vector<Delivery>& ds, const Sleep& sleep)
{
    if (processingTime_.count() != 0) return MessageHandler::handleSome(ds, sleep);
    std::vector<std::exception_ptr> errors(ds.size());
    std::vector<std::string> ids;
    std::vector<std::size_t> at;  // index in ds of each id
    for (std::size_t i = 0; i < ds.size(); ++i) {
        try {
            ids.push_back(decodeOrderId(ds[i].body));
            at.push_back(i);
        } catch (...) {
            errors[i] = std::current_exception();
        }
    }
    const auto outcomes = store_.processInstantly(ids, std::vector<std::string>(kSteps.begin(), kSteps.end()));
    for (std::size_t k = 0; k < ids.size(); ++k) {
        const Delivery& d = ds[at[k]];
        if (outcomes[k].error) {
            errors[at[k]] = outcomes[k].error;
            continue;
        }
        reportInstant(d, ids[k], outcomes[k].result);
    }
    return errors;
}

void OrderProcessor::reportInstant(const Delivery& d, const std::string& id, const InstantResult& result)
{
    const Fields fields{{"ORDER_ID", id}, {"QUEUE", d.queue}, {"MESSAGE_ID", std::to_string(d.messageId)}};
    if (result.before != OrderStatus::Queued && result.before != OrderStatus::Processing) {
        logLine(log_, Poco::Message::PRIO_INFORMATION,
                "order " + id + " is " + std::string(toString(result.before)) + ", nothing to process", fields);
        return;
    }
    if (result.finished) Metrics::instance().ordersProcessed.fetch_add(1);
    if (!log_.information()) {
        // The steps' lines would be dropped: skip building them (the hot path at logging.level=notice or above).
        if (result.finished && log_.notice())
            logLine(log_, Poco::Message::PRIO_NOTICE, "order " + id + " awaiting_payment", fields);
        return;
    }
    // Logged after the commit, as they happened inside it.
    logLine(log_, Poco::Message::PRIO_INFORMATION,
            "order " + id + " processing" + (d.redelivered() ? " (redelivery " + std::to_string(d.attempt) + ")" : ""),
            fields);
    for (const auto& step : result.stepsRun) {
        logLine(log_, Poco::Message::PRIO_INFORMATION, "order " + id + " step " + step + " started", fields);
        logLine(log_, Poco::Message::PRIO_INFORMATION, "order " + id + " step " + step + " completed", fields);
    }
    if (result.finished) logLine(log_, Poco::Message::PRIO_NOTICE, "order " + id + " awaiting_payment", fields);
}

void OrderProcessor::onDeadLetter(const Delivery& d, const std::string& reason)
{
    std::string id;
    try {
        id = decodeOrderId(d.body);
    } catch (const PoisonMessage&) {
        return;  // names no order: nothing to mark
    }
    if (store_.failOrder(id, reason)) {
        logLine(log_, Poco::Message::PRIO_ERROR, "order " + id + " failed: " + reason,
                {{"ORDER_ID", id}, {"QUEUE", d.queue}});
    }
}

PaymentProcessor::PaymentProcessor(WorkStore& store) : store_(store), log_(Poco::Logger::get("orderpay.payments")) {}

std::string PaymentProcessor::decodePaymentId(const std::string& body)
{
    return decodeId(body, "payment_id", "pay_");
}

void PaymentProcessor::handle(const Delivery& d, const Sleep&)
{
    const std::string id = decodePaymentId(d.body);
    Fields fields{{"PAYMENT_ID", id}, {"QUEUE", d.queue}, {"MESSAGE_ID", std::to_string(d.messageId)}};
    if (!store_.startPayment(id)) return;  // settled before: a redelivery
    const PaymentOutcome outcome = store_.settlePayment(id);
    fields.emplace_back("ORDER_ID", outcome.orderId);
    if (outcome.alreadyFinal) return;
    Metrics::instance().paymentsProcessed.fetch_add(1);
    if (outcome.status == PaymentStatus::Succeeded) {
        logLine(log_, Poco::Message::PRIO_NOTICE, "payment " + id + " succeeded; order " + outcome.orderId + " paid",
                fields);
    } else {
        logLine(log_, Poco::Message::PRIO_WARNING,
                "payment " + id + " rejected (" + outcome.reason.value_or("") + ") for order " + outcome.orderId,
                fields);
    }
}

void PaymentProcessor::onDeadLetter(const Delivery& d, const std::string& reason)
{
    std::string id;
    try {
        id = decodePaymentId(d.body);
    } catch (const PoisonMessage&) {
        return;
    }
    store_.abandonPayment(id);
    logLine(log_, Poco::Message::PRIO_ERROR, "payment " + id + " rejected: " + reason,
            {{"PAYMENT_ID", id}, {"QUEUE", d.queue}});
}

}  // namespace orderpay
