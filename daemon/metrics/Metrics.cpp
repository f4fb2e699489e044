#include "metrics/Metrics.h"

#include <sstream>

namespace orderpay {

Metrics& Metrics::instance()
{
    static Metrics metrics;
    return metrics;
}

void Metrics::observeRequest(const std::string& route, int status, double seconds)
{
    std::lock_guard lock(mutex_);
    ++requests_[{route, status}];
    Histogram& h = latency_[route];
    for (std::size_t i = 0; i < kBuckets.size(); ++i) {
        if (seconds <= kBuckets[i]) ++h.buckets[i];
    }
    ++h.count;
    h.sum += seconds;
}

void Metrics::observeStepLateness(double seconds)
{
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < kLateBuckets.size(); ++i) {
        if (seconds <= kLateBuckets[i]) ++lateBuckets_[i];
    }
    ++lateCount_;
    lateSum_ += seconds;
}

std::string Metrics::renderCounters() const
{
    std::ostringstream out;
    std::lock_guard lock(mutex_);
    out << "# HELP orderpay_http_requests_total HTTP requests answered, by route and status.\n"
        << "# TYPE orderpay_http_requests_total counter\n";
    for (const auto& [key, n] : requests_) {
        out << "orderpay_http_requests_total{route=\"" << key.first << "\",status=\"" << key.second << "\"} " << n
            << "\n";
    }
    out << "# HELP orderpay_http_request_duration_seconds Time from request to answer, by route.\n"
        << "# TYPE orderpay_http_request_duration_seconds histogram\n";
    for (const auto& [route, h] : latency_) {
        for (std::size_t i = 0; i < kBuckets.size(); ++i) {
            out << "orderpay_http_request_duration_seconds_bucket{route=\"" << route << "\",le=\"" << kBuckets[i]
                << "\"} " << h.buckets[i] << "\n";
        }
        out << "orderpay_http_request_duration_seconds_bucket{route=\"" << route << "\",le=\"+Inf\"} " << h.count
            << "\n"
            << "orderpay_http_request_duration_seconds_sum{route=\"" << route << "\"} " << h.sum << "\n"
            << "orderpay_http_request_duration_seconds_count{route=\"" << route << "\"} " << h.count << "\n";
    }
    out << "# HELP orderpay_order_step_lateness_seconds Time from an order step's due time (its timer) to its "
           "completion.\n# TYPE orderpay_order_step_lateness_seconds histogram\n";
    for (std::size_t i = 0; i < kLateBuckets.size(); ++i) {
        out << "orderpay_order_step_lateness_seconds_bucket{le=\"" << kLateBuckets[i] << "\"} " << lateBuckets_[i]
            << "\n";
    }
    out << "orderpay_order_step_lateness_seconds_bucket{le=\"+Inf\"} " << lateCount_ << "\n"
        << "orderpay_order_step_lateness_seconds_sum " << lateSum_ << "\n"
        << "orderpay_order_step_lateness_seconds_count " << lateCount_ << "\n";
    auto counter = [&](const char* name, const char* help, std::uint64_t value) {
        out << "# HELP " << name << " " << help << "\n# TYPE " << name << " counter\n" << name << " " << value << "\n";
    };
    counter("orderpay_redeliveries_total", "Messages delivered again after a failure or crash.", redeliveries.load());
    counter("orderpay_dead_letters_total", "Messages moved to the dead letters.", deadLetters.load());
    counter("orderpay_broker_reconnects_total", "Reconnections to the broker.", brokerReconnects.load());
    counter("orderpay_orders_processed_total", "Orders that finished processing.", ordersProcessed.load());
    counter("orderpay_payments_processed_total", "Payments settled.", paymentsProcessed.load());
    out << "# HELP orderpay_http_answers_waiting Answers to writing requests that wait for their commit "
           "(at most http.max_queued).\n# TYPE orderpay_http_answers_waiting gauge\norderpay_http_answers_waiting "
        << answersWaiting.load() << "\n";
    out << "# HELP orderpay_http_connections Client connections open.\n# TYPE orderpay_http_connections gauge\n"
        << "orderpay_http_connections " << connectionsOpen.load() << "\n";
    return out.str();
}

}  // namespace orderpay
