#include "work/OrderProcessor.h"

#include "domain/Errors.h"
#include "domain/Ids.h"
#include "logging/Log.h"
#include "metrics/Metrics.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <algorithm>
#include <limits>

namespace orderpay {
namespace {

Poco::JSON::Object::Ptr parseBody(const std::string& body)
{
    Poco::JSON::Parser parser;
    return parser.parse(body).extract<Poco::JSON::Object::Ptr>();
}

std::string decodeId(const std::string& body, const std::string& field, const std::string& prefix)
{
    try {
        const std::string id = parseBody(body)->getValue<std::string>(field);
        if (ids::isValid(id, prefix)) return id;
    } catch (const Poco::Exception&) {
        // Falls through to the poison message below.
    }
    throw PoisonMessage("the message does not name a valid " + field + ": " + body.substr(0, 200));
}

}  // namespace

OrderProcessor::OrderProcessor(WorkStore& store, const WorkSettings& work)
    : store_(store), processingTime_(work.processingTime), log_(Poco::Logger::get("orderpay.orders"))
{
    plan_.steps.assign(kSteps.begin(), kSteps.end());
    for (std::size_t i = 0; i < kSteps.size(); ++i) plan_.times.push_back(stepTime(i));
    plan_.concurrency = work.concurrency;
    plan_.instance = work.instance;
}

OrderWork OrderProcessor::decode(const std::string& body)
{
    OrderWork work;
    try {
        const auto object = parseBody(body);
        work.orderId = object->getValue<std::string>("order_id");
        if (object->has("step")) work.step = object->getValue<std::string>("step");
    } catch (const Poco::Exception&) {
        work.orderId.clear();  // falls through to the poison message below
    }
    if (!ids::isValid(work.orderId, "ord_"))
        throw PoisonMessage("the message does not name a valid order_id: " + body.substr(0, 200));
    if (!work.step.empty() && std::find(kSteps.begin(), kSteps.end(), work.step) == kSteps.end())
        throw PoisonMessage("the message names no processing step of ours: " + body.substr(0, 200));
    return work;
}

std::chrono::milliseconds OrderProcessor::stepTime(std::size_t index) const
{
    const auto each = processingTime_ / kSteps.size();
    if (index + 1 < kSteps.size()) return each;
    return processingTime_ - each * (kSteps.size() - 1);
}

std::size_t OrderProcessor::capacity(const std::string& queue)
{
    // Steps of orders already started always run; an instant order never
    // stays in processing past its transaction.
    if (queue != kOrdersQueue || plan_.instant()) return std::numeric_limits<std::size_t>::max();
    const std::int64_t free = plan_.concurrency - store_.ordersInProcessing();
    return free > 0 ? static_cast<std::size_t>(free) : 0;
}

void OrderProcessor::handle(const Delivery& d)
{
    const auto errors = handleSome({d});
    if (errors.front()) std::rethrow_exception(errors.front());
}

std::vector<std::exception_ptr> OrderProcessor::handleSome(const std::vector<Delivery>& ds)
{
    std::vector<std::exception_ptr> errors(ds.size());
    std::vector<OrderWork> work;
    std::vector<std::size_t> at;  // index in ds of each piece of work
    for (std::size_t i = 0; i < ds.size(); ++i) {
        try {
            work.push_back(decode(ds[i].body));
            at.push_back(i);
        } catch (...) {
            errors[i] = std::current_exception();
        }
    }
    if (work.empty()) return errors;
    const auto outcomes = store_.advance(work, plan_);
    for (std::size_t k = 0; k < work.size(); ++k) {
        const Delivery& d = ds[at[k]];
        if (outcomes[k].error) {
            errors[at[k]] = outcomes[k].error;
        } else if (outcomes[k].result.noCapacity) {
            errors[at[k]] = std::make_exception_ptr(Postponed("orders.concurrency orders are in processing"));
        } else {
            report(d, work[k].orderId, outcomes[k].result);
        }
    }
    return errors;
}

void OrderProcessor::report(const Delivery& d, const std::string& id, const AdvanceResult& result)
{
    const Fields fields{{"ORDER_ID", id}, {"QUEUE", d.queue}, {"MESSAGE_ID", std::to_string(d.messageId)}};
    if (result.lateMs >= 0) Metrics::instance().observeStepLateness(static_cast<double>(result.lateMs) / 1000.0);
    if (result.stale) {
        if (log_.information())
            logLine(log_, Poco::Message::PRIO_INFORMATION,
                    "order " + id + " is " + std::string(toString(result.before)) +
                        ", nothing to do for this message (a redelivery)",
                    fields);
        return;
    }
    if (result.finished) Metrics::instance().ordersProcessed.fetch_add(1);
    if (!log_.information()) {
        // The steps' lines would be dropped: skip building them (the hot path at logging.level=notice or above).
        if (result.finished && log_.notice())
            logLine(log_, Poco::Message::PRIO_NOTICE, "order " + id + " awaiting_payment", fields);
        return;
    }
    // Logged after the commit, in the order they happened inside it.
    if (result.started) {
        logLine(log_, Poco::Message::PRIO_INFORMATION,
                "order " + id + " processing" +
                    (d.redelivered() ? " (redelivery " + std::to_string(d.attempt) + ")" : ""),
                fields);
    }
    auto started = [&](const std::string& step) {
        logLine(log_, Poco::Message::PRIO_INFORMATION, "order " + id + " step " + step + " started", fields);
    };
    std::size_t b = 0;
    if (result.begunFirst && b < result.begun.size()) started(result.begun[b++]);
    for (const auto& step : result.completed) {
        logLine(log_, Poco::Message::PRIO_INFORMATION, "order " + id + " step " + step + " completed", fields);
        if (b < result.begun.size()) started(result.begun[b++]);
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

void PaymentProcessor::handle(const Delivery& d)
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
