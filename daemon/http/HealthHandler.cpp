#include "http/HealthHandler.h"

#include "webhooks/Dispatcher.h"

#include "http/Json.h"
#include "metrics/Metrics.h"

#include <sstream>

#ifndef ORDERPAY_VERSION
#define ORDERPAY_VERSION "unknown"
#endif

namespace orderpay::http {

HealthHandler::HealthHandler(Service& service, std::string route, bool ready)
    : ApiHandler(service, std::move(route), Access::Open), ready_(ready)
{
}

void HealthHandler::handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse& response)
{
    Poco::JSON::Object::Ptr body = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
    if (!ready_) {
        body->set("status", "ok");
        return sendJson(response, 200, toText(body));
    }
    const bool database = service_.health.writable();
    const BrokerStatus::State brokerState = service_.broker.status().state;
    const bool broker = brokerState == BrokerStatus::State::Ok;
    body->set("status", database && broker ? "ok" : "unavailable");
    body->set("instance", service_.settings.instanceName);
    Poco::JSON::Object::Ptr components = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
    components->set("database", database ? "ok" : "unavailable");
    components->set("broker", std::string(toString(brokerState)));
    body->set("components", components);
    if (!(database && broker)) response.set("Retry-After", "5");
    sendJson(response, database && broker ? 200 : 503, toText(body));
}

MetricsHandler::MetricsHandler(Service& service) : ApiHandler(service, "/metrics", Access::Open) {}

void MetricsHandler::handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse& response)
{
    std::ostringstream out;
    out << Metrics::instance().renderCounters();
    out << "# HELP orderpay_build_info The running orderpayd: its version and instance.name.\n"
        << "# TYPE orderpay_build_info gauge\n"
        << "orderpay_build_info{version=\"" << ORDERPAY_VERSION << "\",instance=\"" << service_.settings.instanceName
        << "\"} 1\n";

    out << "# HELP orderpay_queue_depth Messages in each queue, by state.\n# TYPE orderpay_queue_depth gauge\n";
    const BrokerStatus broker = service_.broker.status();
    const auto& depths = broker.depths;
    for (const auto& [queue, d] : depths) {
        out << "orderpay_queue_depth{queue=\"" << queue << "\",state=\"ready\"} " << d.ready << "\n"
            << "orderpay_queue_depth{queue=\"" << queue << "\",state=\"delayed\"} " << d.delayed << "\n"
            << "orderpay_queue_depth{queue=\"" << queue << "\",state=\"in_flight\"} " << d.inFlight << "\n"
            << "orderpay_queue_depth{queue=\"" << queue << "\",state=\"dead\"} " << d.dead << "\n";
    }
    out << "# HELP orderpay_queue_oldest_age_seconds Age of the oldest message not yet done.\n"
        << "# TYPE orderpay_queue_oldest_age_seconds gauge\n";
    for (const auto& [queue, d] : depths) {
        out << "orderpay_queue_oldest_age_seconds{queue=\"" << queue << "\"} "
            << static_cast<double>(d.oldestAgeMs) / 1000.0 << "\n";
    }
    out << "# HELP orderpay_orders Orders by status.\n# TYPE orderpay_orders gauge\n";
    for (const auto& [status, n] : service_.health.orderCounts()) {
        out << "orderpay_orders{status=\"" << status << "\"} " << n << "\n";
    }
    out << "# HELP orderpay_payments Payments by status.\n# TYPE orderpay_payments gauge\n";
    for (const auto& [status, n] : service_.health.paymentCounts()) {
        out << "orderpay_payments{status=\"" << status << "\"} " << n << "\n";
    }
    service_.health.renderMetrics(out);
    if (service_.dispatcher) service_.dispatcher->renderMetrics(out);
    out << "# HELP orderpay_broker_connected 1 while the broker is connected and answering.\n"
        << "# TYPE orderpay_broker_connected gauge\n"
        << "orderpay_broker_connected " << (broker.state == BrokerStatus::State::Ok ? 1 : 0) << "\n";

    const std::string text = out.str();
    response.setStatusAndReason(Poco::Net::HTTPResponse::HTTP_OK);
    response.setContentType("text/plain; version=0.0.4; charset=utf-8");
    response.setContentLength(static_cast<std::streamsize>(text.size()));
    response.send() << text;
}

}  // namespace orderpay::http
