#pragma once

#include "broker/Broker.h"
#include "common/PeriodicThread.h"
#include "settings/Settings.h"
#include "store/AdminStore.h"
#include "store/StoreHealth.h"

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>

namespace orderpay {

/// The /status document: the whole service at a glance, made of what is
/// cheap to read (the writers' counters, the broker's last look, the
/// health probes), and the rates over the last minute. A thread of its own
/// samples the counters once a second for the rates and keeps the latest
/// document, which every /status/stream listener is sent: the database is
/// read once a second however many listen.
class StatusBoard {
public:
    StatusBoard(AdminStore& admin, StoreHealth& health, const Broker& broker, const Settings& settings);
    ~StatusBoard();
    StatusBoard(const StatusBoard&) = delete;
    StatusBoard& operator=(const StatusBoard&) = delete;

    void start();
    void stop();

    /// A document made now (the counters read now), one JSON line.
    std::string current();
    /// The document of the last sample (at most a second or so old).
    std::string latest() const;

    /// Rates over `window` from samples (steady ms, accepted, processed),
    /// oldest first: per second, 0 with fewer than two samples.
    struct Sample {
        std::int64_t at = 0;
        std::int64_t accepted = 0;   // orders ever accepted
        std::int64_t processed = 0;  // of those, past queued and processing
    };
    static std::pair<double, double> rates(const std::deque<Sample>& samples);

private:
    using Counts = std::map<std::string, std::map<std::string, std::int64_t>>;
    void sample();
    /// Reads the counters; the last ones read if the database does not answer.
    Counts counts();
    std::string render(const Counts& counts);

    AdminStore& admin_;
    StoreHealth& health_;
    const Broker& broker_;
    const Settings& settings_;
    const std::int64_t startedAt_;  // steady ms

    mutable std::mutex mutex_;
    Counts lastCounts_;
    std::deque<Sample> samples_;  // the last minute, one a second
    std::string latest_;
    PeriodicThread sampler_;
};

}  // namespace orderpay
