#include "webhooks/Dispatcher.h"

#include "domain/Clock.h"
#include "domain/Queues.h"
#include "http/Json.h"
#include "logging/Log.h"
#include "webhooks/AddressPolicy.h"
#include "webhooks/Signature.h"

#include <Poco/DateTimeFormatter.h>
#include <Poco/DateTimeParser.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/NumberParser.h>
#include <Poco/String.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <pthread.h>
#include <sys/socket.h>

#include <algorithm>
#include <mutex>

namespace orderpay::webhooks {
namespace {

Poco::Logger& logger() { return Poco::Logger::get("orderpay.webhooks"); }

constexpr std::int64_t kRefreshEveryMs = 1000;  // other instances' endpoint changes
constexpr std::int64_t kPruneEveryMs = 3600 * 1000;
constexpr int kPollMs = 100;  // for messages queued by other units and instances

CURLM* multiOf(void* p) { return static_cast<CURLM*>(p); }

std::string eventIdOf(const std::string& orderId, std::int64_t seq)
{
    // Stable: every attempt, and every endpoint, gets the same webhook-id.
    return "evt_" + orderId.substr(orderId.find('_') + 1) + "_" + std::to_string(seq);
}

std::string rfc3339(std::int64_t millis)
{
    return Poco::DateTimeFormatter::format(Poco::Timestamp(millis * 1000), "%Y-%m-%dT%H:%M:%S.%iZ");
}

WebhookSettlement dropped()
{
    WebhookSettlement s;
    s.kind = WebhookSettlement::Kind::Drop;
    return s;
}

}  // namespace

std::chrono::milliseconds retryDelay(int attempt)
{
    using namespace std::chrono;
    static const std::array<milliseconds, 6> kSchedule{seconds(5), minutes(5), minutes(30), hours(2), hours(5), hours(10)};
    const auto i = static_cast<std::size_t>(std::clamp(attempt, 1, static_cast<int>(kSchedule.size())) - 1);
    return kSchedule[i];
}

std::optional<std::chrono::milliseconds> parseRetryAfter(const std::string& value, std::int64_t nowMillis)
{
    using namespace std::chrono;
    const std::string v = Poco::trim(value);
    std::int64_t delayMs = 0;
    unsigned count = 0;
    if (Poco::NumberParser::tryParseUnsigned(v, count)) {
        delayMs = std::int64_t{count} * 1000;
    } else {
        Poco::DateTime at;
        int tz = 0;
        // An HTTP date ("Sun, 06 Nov 1994 08:49:37 GMT"); Poco's parser alone
        // takes almost any text.
        if (v.size() < 20 || v.find("GMT") == std::string::npos ||
            !Poco::DateTimeParser::tryParse(Poco::DateTimeFormat::HTTP_FORMAT, v, at, tz))
            return std::nullopt;
        delayMs = at.timestamp().epochMicroseconds() / 1000 - nowMillis;
    }
    return std::clamp<milliseconds>(milliseconds(delayMs), seconds(1), hours(10));
}

/// One delivery in flight: its message, what it sends, and what came back.
struct Dispatcher::Transfer {
    CURL* easy = nullptr;
    curl_slist* headers = nullptr;
    StoredMessage message;
    WebhookAttempt attempt;
    std::string body;
    std::string retryAfter;
    std::string refused;  // the address the SSRF guard refused
    bool allowPrivate = false;
    std::int64_t startedMs = 0;
    std::array<char, CURL_ERROR_SIZE> error{};

    ~Transfer()
    {
        if (easy) curl_easy_cleanup(easy);
        if (headers) curl_slist_free_all(headers);
    }

    static size_t discard(char*, size_t size, size_t n, void*) { return size * n; }
    static size_t header(char* data, size_t size, size_t n, void* self)
    {
        const std::string line(data, size * n);
        const auto colon = line.find(':');
        if (colon != std::string::npos && Poco::icompare(line.substr(0, colon), "retry-after") == 0)
            static_cast<Transfer*>(self)->retryAfter = Poco::trim(line.substr(colon + 1));
        return size * n;
    }
    /// The SSRF guard on the address actually connected to.
    static curl_socket_t open(void* self, curlsocktype, curl_sockaddr* address)
    {
        auto* t = static_cast<Transfer*>(self);
        if (!t->allowPrivate && !isPublicAddress(&address->addr)) {
            char text[64] = "?";
            if (address->family == AF_INET)
                ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&address->addr)->sin_addr, text, sizeof text);
            else if (address->family == AF_INET6)
                ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&address->addr)->sin6_addr, text, sizeof text);
            t->refused = text;
            return CURL_SOCKET_BAD;
        }
        return ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
    }
};

Dispatcher::Dispatcher(QueueStore& queue, WebhookStore& store, const WebhookSettings& settings,
                       std::chrono::milliseconds brokerLease)
    : queue_(queue),
      store_(store),
      settings_(settings),
      // Held past the timeout by a lease's time: a delivery is settled (or
      // abandoned, by a crash) well before another instance may take it.
      leaseTime_(settings.timeout + brokerLease),
      perEndpoint_(std::max(1, settings.concurrency / 2)),
      perSlowEndpoint_(std::max(1, settings.concurrency / 4))
{
    static std::once_flag global;
    std::call_once(global, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    multi_ = curl_multi_init();
    if (!multi_) throw std::runtime_error("curl_multi_init failed");
}

Dispatcher::~Dispatcher()
{
    stop();
    curl_multi_cleanup(multiOf(multi_));
}

void Dispatcher::start()
{
    thread_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "webhooks");
        run();
    });
}

void Dispatcher::stop()
{
    stopping_ = true;
    wake();
    if (!thread_.joinable()) return;
    thread_.join();
    // What it held goes back, due at once and not counted: the next start
    // (or another instance) delivers it, rather than after its lease.
    WebhookSettlement back;
    back.kind = WebhookSettlement::Kind::Postpone;
    for (auto& t : transfers_) {
        curl_multi_remove_handle(multiOf(multi_), t->easy);
        settleLater(t->message, t->attempt, back);
    }
    transfers_.clear();
    for (const auto& [endpoint, messages] : waiting_)
        for (const auto& m : messages) settleLater(m, WebhookAttempt{}, back);
    waiting_.clear();
    flushSettlements();
}

void Dispatcher::wake()
{
    if (multi_) curl_multi_wakeup(multiOf(multi_));
}

Dispatcher::Stats Dispatcher::stats() const
{
    std::lock_guard lock(statsMutex_);
    return stats_;
}

void Dispatcher::run()
{
    while (!stopping_) {
        const std::int64_t now = clock::nowMillis();
        try {
            if (now - refreshedAt_ >= kRefreshEveryMs) refreshEndpoints(now);
            if (now - prunedAt_ >= kPruneEveryMs) {
                // The log keeps what a delivery could still be retried for.
                prunedAt_ = now;
                store_.pruneAttempts(now - settings_.maxAge.count() - 24 * 3600 * 1000LL);
            }
            fill(now);
        } catch (const std::exception& e) {
            // The database is away: the store logs it; try again at the next poll.
            logLine(logger(), Poco::Message::PRIO_DEBUG, std::string("webhooks: ") + e.what());
        }
        int running = 0;
        curl_multi_perform(multiOf(multi_), &running);
        int left = 0;
        while (CURLMsg* msg = curl_multi_info_read(multiOf(multi_), &left)) {
            if (msg->msg != CURLMSG_DONE) continue;
            const auto it = std::find_if(transfers_.begin(), transfers_.end(),
                                         [&](const auto& t) { return t->easy == msg->easy_handle; });
            if (it == transfers_.end()) continue;
            const int code = msg->data.result;
            curl_multi_remove_handle(multiOf(multi_), (*it)->easy);
            const std::string endpoint = (*it)->attempt.endpointId;
            finish(**it, code);
            transfers_.erase(it);
            startWaiting(endpoint);
        }
        flushSettlements();
        {
            std::lock_guard lock(statsMutex_);
            stats_.inFlight = static_cast<std::int64_t>(transfers_.size());
        }
        curl_multi_poll(multiOf(multi_), nullptr, 0, kPollMs, nullptr);
    }
}

void Dispatcher::refreshEndpoints(std::int64_t now)
{
    refreshedAt_ = now;
    std::map<std::string, WebhookEndpoint> fresh;
    for (auto& e : store_.endpoints()) fresh.emplace(e.id, std::move(e));
    endpoints_ = std::move(fresh);
}

void Dispatcher::fill(std::int64_t now)
{
    const auto free = [&] { return settings_.concurrency - static_cast<int>(transfers_.size()); };
    // A few leases a turn: those postponed (endpoints at their share) are
    // put off, so the next lease reaches other endpoints' messages.
    for (int round = 0; round < 4 && free() > 0 && !stopping_; ++round) {
        if (!queue_.anythingDue(kWebhooksQueue)) return;
        const std::int64_t leasedAt = clock::nowMillis();
        const auto leased = queue_.lease(kWebhooksQueue, static_cast<std::size_t>(free()), leaseTime_);
        if (leased.empty()) return;
        for (const auto& m : leased) begin(m, now, leasedAt);
        flushSettlements();
    }
}

void Dispatcher::begin(const StoredMessage& m, std::int64_t now, std::int64_t leasedAt)
{
    WebhookAttempt a;
    a.attempt = m.attempt;
    a.at = rfc3339(now);
    std::string orderId, paymentId, createdAt;
    std::int64_t seq = 0;
    try {
        Poco::JSON::Parser parser;
        const auto o = parser.parse(m.body).extract<Poco::JSON::Object::Ptr>();
        a.endpointId = o->optValue<std::string>("endpoint_id", "");
        a.eventType = o->optValue<std::string>("type", "");
        orderId = o->optValue<std::string>("order_id", "");
        paymentId = o->optValue<std::string>("payment_id", "");
        seq = o->optValue<Poco::Int64>("seq", 0);
        a.eventId = o->optValue<std::string>("event_id", "");
        createdAt = o->optValue<std::string>("created_at", "");
    } catch (const Poco::Exception& e) {
        logLine(logger(), Poco::Message::PRIO_ERROR, "webhooks: a message that cannot be read is dropped: " + e.message(),
                {{"QUEUE", kWebhooksQueue}, {"MESSAGE_ID", std::to_string(m.id)}});
        return settleLater(m, a, dropped());
    }
    auto endpoint = endpoints_.find(a.endpointId);
    if (endpoint == endpoints_.end() && refreshedAt_ <= leasedAt) {
        // Registered since the last read: a read after the lease sees it
        // (the message committed after its endpoint). Still missing: removed.
        refreshEndpoints(clock::nowMillis());
        endpoint = endpoints_.find(a.endpointId);
    }
    if (endpoint == endpoints_.end() || !endpoint->second.enabled) {
        std::lock_guard lock(statsMutex_);
        ++stats_.dropped;
        return settleLater(m, a, dropped());
    }
    const WebhookEndpoint& e = endpoint->second;
    // An endpoint slow to answer (its oldest delivery in flight began over a
    // second ago) gets its share of the slots and no more; a quick one is
    // not held back.
    const auto& starts = busy_[e.id];
    const bool slow = !starts.empty() && now - *std::min_element(starts.begin(), starts.end()) > 1000;
    const int share = slow ? perSlowEndpoint_ : perEndpoint_;
    if (static_cast<int>(starts.size()) >= share) {
        auto& waiting = waiting_[e.id];
        if (!slow && static_cast<int>(waiting.size()) < share) {
            // Its next delivery to end starts this one.
            waiting.push_back(m);
            return;
        }
        // Put off, and not counted: the next lease reaches other endpoints'.
        WebhookSettlement later;
        later.kind = WebhookSettlement::Kind::Postpone;
        later.delay = slow ? std::chrono::milliseconds(1000) : std::chrono::milliseconds(200);
        return settleLater(m, a, later);
    }

    auto t = std::make_unique<Transfer>();
    t->message = m;
    t->allowPrivate = settings_.allowPrivateNetworks;
    t->startedMs = now;
    if (a.eventType == "webhook.test") {
        t->body = R"({"id":")" + a.eventId + R"(","type":"webhook.test","created_at":")" + createdAt +
                  R"(","sequence":0,"data":{"endpoint_id":")" + e.id + R"("}})";
    } else {
        a.eventId = eventIdOf(orderId, seq);
        const auto snapshot = store_.orderEvent(orderId, seq, paymentId);
        if (!snapshot) {
            logLine(logger(), Poco::Message::PRIO_ERROR, "webhooks: the event " + a.eventId + " is gone; dropped",
                    {{"ORDER_ID", orderId}, {"QUEUE", kWebhooksQueue}});
            return settleLater(m, a, dropped());
        }
        const std::string data =
            snapshot->payment ? http::paymentJson(*snapshot->payment) : http::orderJson(snapshot->order, false);
        t->body = R"({"id":")" + a.eventId + R"(","type":")" + a.eventType + R"(","created_at":")" + snapshot->at +
                  R"(","sequence":)" + std::to_string(seq) + R"(,"data":)" + data + "}";
    }
    t->attempt = a;

    const std::int64_t timestamp = now / 1000;
    std::string signature = sign(e.secret, a.eventId, timestamp, t->body);
    if (e.previousSecret && e.previousUntil > now) signature += " " + sign(*e.previousSecret, a.eventId, timestamp, t->body);
    for (const std::string& h : {std::string("Content-Type: application/json"),
                                 std::string("User-Agent: orderpay/" ORDERPAY_VERSION), "webhook-id: " + a.eventId,
                                 "webhook-timestamp: " + std::to_string(timestamp), "webhook-signature: " + signature,
                                 std::string("Expect:")})
        t->headers = curl_slist_append(t->headers, h.c_str());

    CURL* c = t->easy = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, e.url.c_str());
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, t->body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(t->body.size()));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(settings_.timeout.count()));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, settings_.allowPrivateNetworks ? "http,https" : "https");
    curl_easy_setopt(c, CURLOPT_PROXY, "");  // never through a proxy from the environment
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!settings_.caFile.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, settings_.caFile.c_str());
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, &Transfer::open);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, t.get());
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Transfer::discard);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &Transfer::header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, t.get());
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, t->error.data());
    curl_multi_add_handle(multiOf(multi_), c);
    busy_[e.id].push_back(now);
    transfers_.push_back(std::move(t));
}

void Dispatcher::finish(Transfer& t, int curlCode)
{
    const std::int64_t now = clock::nowMillis();
    WebhookAttempt& a = t.attempt;
    a.durationMs = now - t.startedMs;
    auto& starts = busy_[a.endpointId];
    if (const auto it = std::find(starts.begin(), starts.end(), t.startedMs); it != starts.end()) starts.erase(it);
    if (starts.empty()) busy_.erase(a.endpointId);
    long status = 0;
    if (curlCode == CURLE_OK) curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
    if (status > 0) a.statusCode = static_cast<int>(status);

    WebhookSettlement s;
    Fields fields{{"QUEUE", kWebhooksQueue}, {"WEBHOOK_ENDPOINT", a.endpointId}, {"WEBHOOK_EVENT", a.eventId}};
    if (status >= 200 && status < 300) {
        s.kind = WebhookSettlement::Kind::Delivered;
    } else if (status == 410) {
        s.kind = WebhookSettlement::Kind::Delivered;  // the message goes with its endpoint
        s.disableReason = "gone: the endpoint answered 410 at " + a.at;
        a.error = "answered 410 Gone: the endpoint is disabled";
        endpoints_[a.endpointId].enabled = false;  // until the next refresh reads it so
        logLine(logger(), Poco::Message::PRIO_WARNING,
                "webhook endpoint " + a.endpointId + " answered 410 Gone: disabled", fields);
    } else {
        if (status >= 300 && status < 400) a.error = "answered " + std::to_string(status) + " (redirects are not followed)";
        else if (status > 0) a.error = "answered " + std::to_string(status);
        else if (!t.refused.empty())
            a.error = "refused to connect to " + t.refused +
                      ": not a public address (webhooks.allow_private_networks is false)";
        else if (curlCode == CURLE_OPERATION_TIMEDOUT)
            a.error = "no answer within webhooks.timeout (" + std::to_string(settings_.timeout.count()) + " ms)";
        else
            a.error = std::string(curl_easy_strerror(static_cast<CURLcode>(curlCode))) +
                      (t.error[0] ? std::string(": ") + t.error.data() : std::string());
        std::chrono::milliseconds delay = retryDelay(a.attempt);
        if (status > 0 && !t.retryAfter.empty())
            if (auto after = parseRetryAfter(t.retryAfter, now)) delay = *after;
        const std::int64_t deadline = t.message.createdAt + settings_.maxAge.count();
        if (now + delay.count() > deadline) {
            s.kind = WebhookSettlement::Kind::GiveUp;
            s.reason = "gave up after " + std::to_string(a.attempt) + " attempt" + (a.attempt == 1 ? "" : "s") +
                       " (webhooks.max_age): " + *a.error;
            logLine(logger(), Poco::Message::PRIO_WARNING,
                    "webhook " + a.eventId + " to " + a.endpointId + ": " + s.reason, fields);
        } else {
            s.kind = WebhookSettlement::Kind::Retry;
            s.delay = delay;
            s.reason = *a.error;
            logLine(logger(), Poco::Message::PRIO_NOTICE,
                    "webhook " + a.eventId + " to " + a.endpointId + " attempt " + std::to_string(a.attempt) +
                        " failed (" + *a.error + "); next in " + std::to_string(delay.count() / 1000) + " s",
                    fields);
        }
    }
    {
        std::lock_guard lock(statsMutex_);
        if (s.disableReason) ++stats_.disabled;
        else if (s.kind == WebhookSettlement::Kind::Delivered) ++stats_.delivered;
        else if (s.kind == WebhookSettlement::Kind::GiveUp) ++stats_.gaveUp;
        else ++stats_.failed;
        const double seconds = static_cast<double>(a.durationMs) / 1000.0;
        for (std::size_t i = 0; i < kSecondsBounds.size(); ++i)
            if (seconds <= kSecondsBounds[i]) ++stats_.upTo[i];
        ++stats_.count;
        stats_.sumSeconds += seconds;
    }
    settleLater(t.message, a, s);
}

void Dispatcher::startWaiting(const std::string& endpointId)
{
    const auto it = waiting_.find(endpointId);
    if (it == waiting_.end()) return;
    const StoredMessage next = it->second.front();
    it->second.erase(it->second.begin());
    if (it->second.empty()) waiting_.erase(it);
    const std::int64_t now = clock::nowMillis();
    begin(next, now, now);  // its endpoint was known when it began waiting
}

void Dispatcher::settleLater(const StoredMessage& m, const WebhookAttempt& attempt, const WebhookSettlement& settlement)
{
    toSettle_.emplace_back(m, attempt);
    settlements_.push_back(settlement);
}

void Dispatcher::flushSettlements()
{
    if (toSettle_.empty()) return;
    try {
        store_.settle(toSettle_, settlements_);
    } catch (const std::exception& e) {
        // Unsettled, the messages come due again when their leases run out.
        logLine(logger(), Poco::Message::PRIO_WARNING, std::string("webhooks: settling deliveries failed: ") + e.what());
    }
    toSettle_.clear();
    settlements_.clear();
}

void Dispatcher::renderMetrics(std::ostream& out) const
{
    const Stats s = stats();
    out << "# HELP orderpay_webhook_deliveries_total Webhook delivery attempts by outcome (failed: to be retried; "
           "gave_up: past webhooks.max_age; disabled: answered 410; dropped: endpoint removed or disabled).\n"
        << "# TYPE orderpay_webhook_deliveries_total counter\n";
    for (const auto& [outcome, n] : {std::pair<const char*, std::uint64_t>{"delivered", s.delivered},
                                     {"failed", s.failed},
                                     {"gave_up", s.gaveUp},
                                     {"disabled", s.disabled},
                                     {"dropped", s.dropped}})
        out << "orderpay_webhook_deliveries_total{outcome=\"" << outcome << "\"} " << n << "\n";
    out << "# HELP orderpay_webhook_delivery_duration_seconds Time from sending a webhook to its answer (or error).\n"
        << "# TYPE orderpay_webhook_delivery_duration_seconds histogram\n";
    for (std::size_t i = 0; i < kSecondsBounds.size(); ++i)
        out << "orderpay_webhook_delivery_duration_seconds_bucket{le=\"" << kSecondsBounds[i] << "\"} " << s.upTo[i]
            << "\n";
    out << "orderpay_webhook_delivery_duration_seconds_bucket{le=\"+Inf\"} " << s.count << "\n"
        << "orderpay_webhook_delivery_duration_seconds_sum " << s.sumSeconds << "\n"
        << "orderpay_webhook_delivery_duration_seconds_count " << s.count << "\n"
        << "# HELP orderpay_webhook_deliveries_in_flight Webhook deliveries this instance has in flight.\n"
        << "# TYPE orderpay_webhook_deliveries_in_flight gauge\n"
        << "orderpay_webhook_deliveries_in_flight " << s.inFlight << "\n"
        << "# HELP orderpay_webhook_endpoints Enabled webhook endpoints this instance announces events to.\n"
        << "# TYPE orderpay_webhook_endpoints gauge\n"
        << "orderpay_webhook_endpoints " << store_.subscriptions().size() << "\n";
}

}  // namespace orderpay::webhooks
