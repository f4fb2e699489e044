#include "webhooks/Dispatcher.h"

#include "domain/Clock.h"
#include "domain/Queues.h"
#include "http/Json.h"
#include "logging/Log.h"
#include "webhooks/AddressPolicy.h"
#include "webhooks/Signature.h"

#include <Poco/DateTimeParser.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/NumberParser.h>
#include <Poco/String.h>

#include <curl/curl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>
#include <sys/socket.h>

#include <algorithm>
#include <string_view>
#include <cerrno>
#include <cstring>
#include <mutex>

namespace orderpay::webhooks {
namespace {

Poco::Logger& logger() { return Poco::Logger::get("orderpay.webhooks"); }

constexpr std::int64_t kRefreshEveryMs = 1000;  // other instances' endpoint changes
constexpr std::int64_t kPruneEveryMs = 3600 * 1000;
constexpr int kPollMs = 100;  // for messages queued by other units and instances
constexpr int kRestAfter = 3;  // failures with no answer in a row
// As the retry schedule's first delays: a rest is never shorter than the
// wait of the deliveries it puts off would have been.
constexpr std::int64_t kFirstRestMs = 5'000;
constexpr std::int64_t kLongestRestMs = 300'000;
constexpr std::int64_t kRescanMs = 5000;  // the outbox from its start
constexpr int kNice = 19;  // the delivering thread's

CURLM* multiOf(void* p) { return static_cast<CURLM*>(p); }

std::string eventIdOf(const std::string& orderId, std::int64_t seq)
{
    // Stable: every attempt, and every endpoint, gets the same webhook-id.
    return "evt_" + orderId.substr(orderId.find('_') + 1) + "_" + std::to_string(seq);
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
            t->refused = addressText(&address->addr);
            return CURL_SOCKET_BAD;
        }
        return ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
    }
};

Dispatcher::Dispatcher(QueueStore& queue, WebhookStore& store, const WebhookSettings& settings,
                       std::chrono::milliseconds brokerLease, bool shared)
    : queue_(queue),
      store_(store),
      settings_(settings),
      // Held past the timeout by a lease's time: a delivery is settled (or
      // abandoned, by a crash) well before another instance may take it.
      leaseTime_(settings.timeout + brokerLease),
      perEndpoint_(std::max(1, settings.concurrency / 2)),
      perSlowEndpoint_(std::max(1, settings.concurrency / 4)),
      buffer_(std::max(64, 4 * settings.concurrency)),
      shared_(shared)
{
    static std::once_flag global;
    std::call_once(global, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    multi_ = curl_multi_init();
    if (!multi_) throw std::runtime_error("curl_multi_init failed");
    // Connections kept open for reuse: by default libcurl keeps four per
    // transfer added, and closes what is over as transfers end.
    curl_multi_setopt(multiOf(multi_), CURLMOPT_MAXCONNECTS, static_cast<long>(4 * settings.concurrency));
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
        // The API first: a thread at the lowest priority runs when the
        // writers and the HTTP loops leave a core to it, and is put off
        // when they want one. Lowering one's own priority takes no
        // privilege (the unit allows setpriority for this alone).
        if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kNice) != 0)
            logLine(logger(), Poco::Message::PRIO_NOTICE,
                    std::string("webhooks: could not lower the delivering thread's priority: ") + std::strerror(errno));
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
    waitingCount_ = 0;
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
        {
            std::lock_guard lock(settled_->mutex);
            for (const auto id : settled_->ids) held_.erase(id);
            settled_->ids.clear();
        }
        watchWriters(now);
        try {
            if (now - refreshedAt_ >= kRefreshEveryMs || store_.subscriptions().generation() != seenGeneration_)
                refreshEndpoints(now);
            if (now - prunedAt_ >= kPruneEveryMs) {
                // The log keeps what a delivery could still be retried for.
                prunedAt_ = now;
                store_.pruneAttempts(now - settings_.maxAge.count() - 24 * 3600 * 1000LL);
            }
            fetch(now);
        } catch (const std::exception& e) {
            // The database is away: the store logs it; try again at the next poll.
            logLine(logger(), Poco::Message::PRIO_DEBUG, std::string("webhooks: ") + e.what());
        }
        pump(now);
        // Until a turn ends nothing: a transfer started in the slots just
        // freed may end within the same perform (a receiver on the same
        // machine answers in microseconds), and its end is read only here,
        // not by the poll below.
        for (bool ended = true; ended && !stopping_;) {
            int running = 0;
            curl_multi_perform(multiOf(multi_), &running);
            ended = false;
            int left = 0;
            while (CURLMsg* msg = curl_multi_info_read(multiOf(multi_), &left)) {
                if (msg->msg != CURLMSG_DONE) continue;
                const auto it = std::find_if(transfers_.begin(), transfers_.end(),
                                             [&](const auto& t) { return t->easy == msg->easy_handle; });
                if (it == transfers_.end()) continue;
                const int code = msg->data.result;
                curl_multi_remove_handle(multiOf(multi_), (*it)->easy);
                finish(**it, code);
                transfers_.erase(it);
                ended = true;
            }
            if (!ended) break;
            const std::int64_t later = clock::nowMillis();
            watchWriters(later);
            if (toSettle_.size() >= 64 || later - flushedAt_ >= 20) flushSettlements();
            // The slots just freed, from what waits, taken in hand anew
            // when it runs low (not after the next poll's wait).
            try {
                fetch(later);
            } catch (const std::exception& e) {
                logLine(logger(), Poco::Message::PRIO_DEBUG, std::string("webhooks: ") + e.what());
            }
            pump(later);
        }
        // Settled in batches: one transaction for many deliveries, at most
        // 20 ms after the first (at once when nothing else is in flight).
        const std::int64_t after = clock::nowMillis();
        if (!toSettle_.empty() && (toSettle_.size() >= 64 || after - flushedAt_ >= 20 || transfers_.empty()))
            flushSettlements();
        {
            std::lock_guard lock(statsMutex_);
            stats_.inFlight = static_cast<std::int64_t>(transfers_.size());
            stats_.yielding = pacer_.yielding();
        }
        curl_multi_poll(multiOf(multi_), nullptr, 0, pacer_.waitMs(after, static_cast<int>(transfers_.size()) < settings_.concurrency ? waitingCount_ : 0,
                                  toSettle_.empty() ? kPollMs : 20), nullptr);
    }
}

void Dispatcher::refreshEndpoints(std::int64_t now)
{
    refreshedAt_ = now;
    std::map<std::string, WebhookEndpoint> fresh;
    for (auto& e : store_.endpoints()) fresh.emplace(e.id, std::move(e));
    endpoints_ = std::move(fresh);
    seenGeneration_ = store_.subscriptions().generation();
}

void Dispatcher::watchWriters(std::int64_t now)
{
    if (!pacer_.due(now)) return;
    const auto [busyMicros, writers] = store_.writersBusy();
    pacer_.watch(now, busyMicros, writers);
}

bool Dispatcher::slow(const std::string& endpointId, std::int64_t now) const
{
    const auto b = busy_.find(endpointId);
    return b != busy_.end() && !b->second.empty() && now - *std::min_element(b->second.begin(), b->second.end()) > 1000;
}

bool Dispatcher::resting(const std::string& endpointId) const
{
    const auto r = rests_.find(endpointId);
    return r != rests_.end() && r->second.failures >= kRestAfter;
}

std::int64_t Dispatcher::restFor(const std::string& endpointId, std::int64_t now) const
{
    const auto r = rests_.find(endpointId);
    if (r == rests_.end() || r->second.failures < kRestAfter) return 0;
    return std::max<std::int64_t>(r->second.until - now, 0);
}

std::int64_t Dispatcher::putOffFor(const std::string& endpointId, std::int64_t now) const
{
    // Resting: until its rest ends (the rest grows, so a backlog is read
    // and put off again ever less often; put off longer, one put off just
    // as a probe succeeds - its settlement committed after resume() - would
    // wait all that time). Slow: until its oldest delivery in flight has its
    // answer or times out. Read again sooner, a backlog of thousands would
    // be read and put off again every second.
    std::int64_t until = now + restFor(endpointId, now);
    if (const auto b = busy_.find(endpointId); b != busy_.end() && !b->second.empty())
        until = std::max(until, *std::min_element(b->second.begin(), b->second.end()) + settings_.timeout.count());
    return std::max<std::int64_t>(1000, until - now);
}

bool Dispatcher::keepFor(const std::string& endpointId, std::int64_t now) const
{
    if (slow(endpointId, now)) return false;
    const auto r = rests_.find(endpointId);
    if (r == rests_.end() || r->second.failures < kRestAfter) return true;
    // Resting: one delivery, the probe, once its rest is over and nothing
    // of it is in flight.
    const auto w = waiting_.find(endpointId);
    return r->second.until <= now && !busy_.count(endpointId) && (w == waiting_.end() || w->second.empty());
}

void Dispatcher::fetch(std::int64_t now)
{
    // An endpoint slow to answer, or resting, gives back what waits for it,
    // not counted: it would hold the buffer, and so every other endpoint's
    // deliveries. A message is put off (putOffFor); an announced delivery
    // (SQLite's outbox) is only let go, and read again at the next rescan.
    // One past webhooks.max_age meanwhile is given up on (a dead letter) as
    // it is put off: an endpoint that never answers again would keep it.
    auto putOff = [&](const StoredMessage& m, const std::string& endpointId) {
        WebhookSettlement s;
        if (now > m.createdAt + settings_.maxAge.count()) {
            s.kind = WebhookSettlement::Kind::GiveUp;
            s.reason = "gave up (webhooks.max_age) while its endpoint was slow to answer or resting, after " +
                       std::to_string(std::max(0, m.attempt - 1)) + " attempts";
            std::lock_guard lock(statsMutex_);
            ++stats_.gaveUp;
        } else {
            s.kind = WebhookSettlement::Kind::Postpone;
            s.delay = std::chrono::milliseconds(putOffFor(endpointId, now));
        }
        settleLater(m, WebhookAttempt{}, s);
    };
    for (auto it = waiting_.begin(); it != waiting_.end();) {
        auto& messages = it->second;
        std::size_t keep = 0;
        if (slow(it->first, now)) keep = 0;
        else if (resting(it->first)) keep = restFor(it->first, now) == 0 && !busy_.count(it->first) ? 1 : 0;
        else keep = messages.size();
        if (keep >= messages.size()) {
            ++it;
            continue;
        }
        while (messages.size() > keep) {
            if (messages.back().id < 0) held_.erase(messages.back().id);
            else putOff(messages.back(), it->first);
            messages.pop_back();
            --waitingCount_;
        }
        it = messages.empty() ? waiting_.erase(it) : std::next(it);
    }
    if (static_cast<int>(waitingCount_) > buffer_ / 2) return;
    const std::int64_t fetchedAt = clock::nowMillis();
    const std::size_t want = static_cast<std::size_t>(buffer_) - waitingCount_;
    // Shared: leased in the database (one instance's). Alone: read, and
    // what is in hand skipped (it stays due until settled): the messages
    // due (retries, put off), then the deliveries announced since.
    std::vector<StoredMessage> fetched;
    if (shared_) {
        if (!queue_.anythingDue(kWebhooksQueue)) return;
        fetched = queue_.lease(kWebhooksQueue, want, leaseTime_);
    } else {
        fetched = queue_.due(kWebhooksQueue, want + held_.size());
        // The outbox is read on from where the last read ended, and again
        // from its start every kRescanMs (what was let go meanwhile: an
        // endpoint's rest, a settlement that failed), or when an endpoint
        // answers again. Its rows of an endpoint slow or resting are passed
        // over, not written: a backlog of a dead endpoint costs no write.
        if (now - rescannedAt_ >= kRescanMs) {
            rescannedAt_ = now;
            outboxAfter_ = 0;
        }
        // Read on in large steps while every row read is passed over (a
        // resting endpoint's backlog), so the others' rows are soon reached.
        auto announced = store_.announced(outboxAfter_, passingOver_ ? std::max<std::size_t>(want, 1024) : want);
        passingOver_ = !announced.empty();
        fetched.insert(fetched.end(), std::make_move_iterator(announced.begin()), std::make_move_iterator(announced.end()));
    }
    for (auto& m : fetched) {
        if (static_cast<int>(waitingCount_) >= buffer_) break;  // the rest is read again
        if (m.id < 0) outboxAfter_ = std::max(outboxAfter_, -m.id);
        if (!held_.insert(m.id).second) continue;
        std::string endpointId;
        try {
            // The daemon writes the endpoint first (announceWebhooks,
            // queueTest): read without a parse, as thousands of a resting
            // endpoint's may be passed over at each rescan.
            static constexpr std::string_view kPrefix = R"({"endpoint_id":")";
            const auto end = m.body.find('"', kPrefix.size());
            if (m.body.compare(0, kPrefix.size(), kPrefix) == 0 && end != std::string::npos) {
                endpointId = m.body.substr(kPrefix.size(), end - kPrefix.size());
            } else {
                Poco::JSON::Parser parser;
                endpointId =
                    parser.parse(m.body).extract<Poco::JSON::Object::Ptr>()->optValue<std::string>("endpoint_id", "");
            }
        } catch (const Poco::Exception& e) {
            logLine(logger(), Poco::Message::PRIO_ERROR,
                    "webhooks: a message that cannot be read is dropped: " + e.message(),
                    {{"QUEUE", kWebhooksQueue}, {"MESSAGE_ID", std::to_string(m.id)}});
            settleLater(m, WebhookAttempt{}, dropped());
            continue;
        }
        auto endpoint = endpoints_.find(endpointId);
        if (endpoint == endpoints_.end() && refreshedAt_ <= fetchedAt) {
            // Registered since the last read: a read now sees it (the
            // message committed after its endpoint). Still missing: removed.
            refreshEndpoints(clock::nowMillis());
            endpoint = endpoints_.find(endpointId);
        }
        if (endpoint == endpoints_.end() || !endpoint->second.enabled) {
            {
                std::lock_guard lock(statsMutex_);
                ++stats_.dropped;
            }
            settleLater(m, WebhookAttempt{}, dropped());
            continue;
        }
        if (!keepFor(endpointId, now)) {
            if (m.id < 0 && now <= m.createdAt + settings_.maxAge.count()) held_.erase(m.id);  // passed over
            else putOff(m, endpointId);
            continue;
        }
        if (m.id < 0) passingOver_ = false;
        waiting_[endpointId].push_back(std::move(m));
        ++waitingCount_;
    }
}

void Dispatcher::pump(std::int64_t now)
{
    // Endpoint by endpoint, one delivery each a round, so one endpoint's
    // backlog does not go before every other's.
    for (bool started = true; started;) {
        started = false;
        for (auto it = waiting_.begin(); it != waiting_.end();) {
            if (static_cast<int>(transfers_.size()) >= settings_.concurrency) return;
            const auto b = busy_.find(it->first);
            const int inFlight = b == busy_.end() ? 0 : static_cast<int>(b->second.size());
            const int share = resting(it->first) ? (restFor(it->first, now) == 0 ? 1 : 0)
                                                 : (slow(it->first, now) ? perSlowEndpoint_ : perEndpoint_);
            if (inFlight >= share) {
                ++it;
                continue;
            }
            if (!pacer_.take(now)) return;
            const StoredMessage m = std::move(it->second.front());
            it->second.pop_front();
            --waitingCount_;
            it = it->second.empty() ? waiting_.erase(it) : std::next(it);
            begin(m, now);
            started = true;
        }
    }
}

void Dispatcher::begin(const StoredMessage& m, std::int64_t now)
{
    WebhookAttempt a;
    a.attempt = m.attempt;
    a.at = clock::rfc3339(now);
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
    } catch (const Poco::Exception&) {
        return settleLater(m, a, dropped());  // read once already, in fetch()
    }
    const auto endpoint = endpoints_.find(a.endpointId);
    if (endpoint == endpoints_.end() || !endpoint->second.enabled) {
        std::lock_guard lock(statsMutex_);
        ++stats_.dropped;
        return settleLater(m, a, dropped());
    }
    const WebhookEndpoint& e = endpoint->second;

    auto t = std::make_unique<Transfer>();
    t->message = m;
    t->allowPrivate = settings_.allowPrivateNetworks;
    t->startedMs = now;
    if (a.eventType == "webhook.test") {
        t->body = R"({"id":")" + a.eventId + R"(","type":"webhook.test","created_at":")" + createdAt +
                  R"(","sequence":0,"data":{"endpoint_id":")" + e.id + R"("}})";
    } else {
        a.eventId = eventIdOf(orderId, seq);
        std::optional<OrderEventSnapshot> snapshot;
        try {
            snapshot = store_.orderEvent(orderId, seq, paymentId);
        } catch (const std::exception& e) {
            // The database is away: tried again in a second, not counted.
            logLine(logger(), Poco::Message::PRIO_DEBUG, std::string("webhooks: ") + e.what());
            WebhookSettlement later;
            later.kind = WebhookSettlement::Kind::Postpone;
            later.delay = std::chrono::seconds(1);
            return settleLater(m, a, later);
        }
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
    // An answer, whatever it says, ends a rest; failures with none add up
    // to one (and a failed probe doubles it).
    if (status > 0) {
        if (const auto r = rests_.find(a.endpointId); r != rests_.end()) {
            if (r->second.failures >= kRestAfter) {
                logLine(logger(), Poco::Message::PRIO_NOTICE,
                        "webhook endpoint " + a.endpointId + " answers again: its deliveries resume",
                        {{"QUEUE", kWebhooksQueue}, {"WEBHOOK_ENDPOINT", a.endpointId}});
                outboxAfter_ = 0;  // what was passed over for the rest, now
                try {
                    store_.resume(a.endpointId);  // and what was put off
                } catch (const std::exception& e) {
                    logLine(logger(), Poco::Message::PRIO_DEBUG, std::string("webhooks: ") + e.what());
                }
            }
            rests_.erase(r);
        }
    } else if (Rest& r = rests_[a.endpointId]; ++r.failures >= kRestAfter && r.until <= t.startedMs) {
        // The rest begins, or a probe (begun after it) failed: a longer one.
        // Deliveries begun before it, failing meanwhile, change nothing.
        r.lengthMs = r.lengthMs == 0 ? kFirstRestMs : std::min(2 * r.lengthMs, kLongestRestMs);
        r.until = now + r.lengthMs;
        if (r.failures == kRestAfter)
            logLine(logger(), Poco::Message::PRIO_WARNING,
                    "webhook endpoint " + a.endpointId + " failed " + std::to_string(kRestAfter) +
                        " deliveries in a row with no answer: it rests, one delivery tried at a time, "
                        "5 s to 5 min apart, until it answers",
                    {{"QUEUE", kWebhooksQueue}, {"WEBHOOK_ENDPOINT", a.endpointId}});
    }

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

void Dispatcher::settleLater(const StoredMessage& m, const WebhookAttempt& attempt, const WebhookSettlement& settlement)
{
    toSettle_.emplace_back(m, attempt);
    settlements_.push_back(settlement);
}

void Dispatcher::flushSettlements()
{
    flushedAt_ = clock::nowMillis();
    if (toSettle_.empty()) return;
    std::vector<std::int64_t> ids;
    for (const auto& [m, attempt] : toSettle_) ids.push_back(m.id);
    // Committed (or failed: then they are due again, delivered again):
    // no longer in hand. Told on the writer's thread, maybe after this
    // dispatcher is gone, so through a state of its own.
    auto done = [settled = settled_, ids] {
        std::lock_guard lock(settled->mutex);
        settled->ids.insert(settled->ids.end(), ids.begin(), ids.end());
    };
    try {
        store_.settle(toSettle_, settlements_, done);
    } catch (const std::exception& e) {
        logLine(logger(), Poco::Message::PRIO_WARNING, std::string("webhooks: settling deliveries failed: ") + e.what());
        done();
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
        << "# HELP orderpay_webhook_deliveries_yielding 1 while deliveries yield to the API (the database's writers "
           "are saturated): at most " << kYieldingRate << " start a second.\n"
        << "# TYPE orderpay_webhook_deliveries_yielding gauge\n"
        << "orderpay_webhook_deliveries_yielding " << (s.yielding ? 1 : 0) << "\n"
        << "# HELP orderpay_webhook_endpoints Enabled webhook endpoints this instance announces events to.\n"
        << "# TYPE orderpay_webhook_endpoints gauge\n"
        << "orderpay_webhook_endpoints " << store_.subscriptions().size() << "\n";
}

}  // namespace orderpay::webhooks
