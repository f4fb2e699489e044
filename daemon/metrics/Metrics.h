#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace orderpay {

/// Process-wide counters and histograms, rendered in the Prometheus text
/// format by the /metrics handler together with gauges read at scrape time.
class Metrics {
public:
    static Metrics& instance();

    /// Latency buckets in seconds, the Prometheus convention.
    static constexpr std::array<double, 12> kBuckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                     0.05,   0.1,   0.25,   0.5,   1.0,  2.5};

    void observeRequest(const std::string& route, int status, double seconds);
    /// How long after its due time an order's step ran (its timer's lateness).
    void observeStepLateness(double seconds);
    /// Buckets of the step lateness, in seconds: a timer fires on a poll.
    static constexpr std::array<double, 10> kLateBuckets{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};

    std::atomic<std::uint64_t> redeliveries{0};
    std::atomic<std::uint64_t> deadLetters{0};
    std::atomic<std::uint64_t> brokerReconnects{0};
    std::atomic<std::uint64_t> ordersProcessed{0};
    std::atomic<std::uint64_t> paymentsProcessed{0};
    /// Answers to writing requests that wait for their commit (a gauge).
    std::atomic<std::int64_t> answersWaiting{0};
    /// Client connections open (a gauge).
    std::atomic<std::int64_t> connectionsOpen{0};

    /// Counters and histograms in text format (gauges are added by the caller).
    std::string renderCounters() const;

private:
    struct Histogram {
        std::array<std::uint64_t, kBuckets.size()> buckets{};
        std::uint64_t count = 0;
        double sum = 0;
    };

    mutable std::mutex mutex_;
    std::map<std::pair<std::string, int>, std::uint64_t> requests_;
    std::map<std::string, Histogram> latency_;
    std::array<std::uint64_t, kLateBuckets.size()> lateBuckets_{};
    std::uint64_t lateCount_ = 0;
    double lateSum_ = 0;
};

}  // namespace orderpay
