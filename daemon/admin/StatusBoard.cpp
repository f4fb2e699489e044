#include "admin/StatusBoard.h"

#include "domain/Clock.h"
#include "domain/Order.h"

#include <Poco/JSON/Object.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <sstream>

#ifndef ORDERPAY_VERSION
#define ORDERPAY_VERSION "unknown"
#endif

namespace orderpay {
namespace {

constexpr std::int64_t kWindowMs = 60'000;

Poco::JSON::Object::Ptr object() { return new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER); }

/// `value` rounded to 0.1: a rate or an age, for people and charts.
double tenths(double value) { return std::round(value * 10.0) / 10.0; }

}  // namespace

StatusBoard::StatusBoard(AdminStore& admin, StoreHealth& health, const Broker& broker, const Settings& settings)
    : admin_(admin),
      health_(health),
      broker_(broker),
      settings_(settings),
      startedAt_(clock::steadyMillis()),
      sampler_("status", std::chrono::seconds(1), [this] { sample(); })
{
}

StatusBoard::~StatusBoard() { stop(); }

void StatusBoard::start() { sampler_.start(); }

void StatusBoard::stop() { sampler_.stop(); }

StatusBoard::Counts StatusBoard::counts()
{
    try {
        Counts fresh = admin_.statusCounts();
        std::lock_guard lock(mutex_);
        lastCounts_ = fresh;
        return fresh;
    } catch (const std::exception&) {
        // The database does not answer: health says so; the counts stand.
        std::lock_guard lock(mutex_);
        return lastCounts_;
    }
}

std::pair<double, double> StatusBoard::rates(const std::deque<Sample>& samples)
{
    if (samples.size() < 2) return {0.0, 0.0};
    const Sample& first = samples.front();
    const Sample& last = samples.back();
    const double seconds = static_cast<double>(last.at - first.at) / 1000.0;
    if (seconds <= 0) return {0.0, 0.0};
    // A replay takes orders back from failed to queued: the count of those
    // processed falls, but nothing was processed backwards.
    return {std::max(0.0, static_cast<double>(last.accepted - first.accepted) / seconds),
            std::max(0.0, static_cast<double>(last.processed - first.processed) / seconds)};
}

void StatusBoard::sample()
{
    const Counts now = counts();
    Sample s;
    s.at = clock::steadyMillis();
    if (auto it = now.find("orders"); it != now.end()) {
        for (const auto& [status, n] : it->second) {
            s.accepted += n;
            if (status != "queued" && status != "processing") s.processed += n;
        }
    }
    {
        std::lock_guard lock(mutex_);
        samples_.push_back(s);
        while (samples_.size() > 2 && samples_.back().at - samples_.front().at > kWindowMs) samples_.pop_front();
    }
    std::string document = render(now);
    std::lock_guard lock(mutex_);
    latest_ = std::move(document);
}

std::string StatusBoard::current() { return render(counts()); }

std::string StatusBoard::latest() const
{
    std::lock_guard lock(mutex_);
    return latest_;
}

std::string StatusBoard::render(const Counts& counts)
{
    auto doc = object();
    doc->set("instance", settings_.instanceName);
    doc->set("version", ORDERPAY_VERSION);
    doc->set("uptime_s", (clock::steadyMillis() - startedAt_) / 1000);
    doc->set("at", clock::nowRfc3339());
    doc->set("store", settings_.store.kind);
    doc->set("broker", settings_.broker.kind);

    const bool database = health_.writable();
    const BrokerStatus broker = broker_.status();
    const bool brokerOk = broker.state == BrokerStatus::State::Ok;
    auto health = object();
    health->set("status", database && brokerOk ? "ok" : "unavailable");
    auto components = object();
    components->set("database", database ? "ok" : "unavailable");
    components->set("broker", std::string(toString(broker.state)));
    health->set("components", components);
    doc->set("health", health);

    auto queues = object();
    for (const auto& [name, d] : broker.depths) {
        auto q = object();
        q->set("ready", d.ready);
        q->set("in_flight", d.inFlight);
        q->set("delayed", d.delayed);
        q->set("dead", d.dead);
        q->set("oldest_ready_age_s", tenths(static_cast<double>(d.oldestAgeMs) / 1000.0));
        queues->set(name, q);
    }
    doc->set("queues", queues);

    // Every status, 0 where none: a chart's series never goes missing.
    auto byStatus = [&](const char* kind, auto statuses) {
        auto o = object();
        const auto it = counts.find(kind);
        for (const auto status : statuses) {
            const std::string name(toString(status));
            std::int64_t n = 0;
            if (it != counts.end())
                if (auto found = it->second.find(name); found != it->second.end()) n = found->second;
            o->set(name, n);
        }
        return o;
    };
    doc->set("orders", byStatus("orders", std::array{OrderStatus::Queued, OrderStatus::Processing,
                                                     OrderStatus::AwaitingPayment, OrderStatus::Paid,
                                                     OrderStatus::Failed, OrderStatus::Cancelled}));
    doc->set("payments", byStatus("payments", std::array{PaymentStatus::Queued, PaymentStatus::Processing,
                                                         PaymentStatus::Succeeded, PaymentStatus::Rejected}));
    std::pair<double, double> r;
    {
        std::lock_guard lock(mutex_);
        r = rates(samples_);
    }
    auto rateObject = object();
    rateObject->set("accepted_per_s", tenths(r.first));
    rateObject->set("processed_per_s", tenths(r.second));
    doc->set("rates", rateObject);

    std::ostringstream out;
    doc->stringify(out);
    return out.str();
}

}  // namespace orderpay
