// Soak: mixed traffic at a fixed rate against one daemon
// for 60 s (10 min with ORDERPAY_RELIABILITY_SCALE=long), its RSS sampled
// every second. It passes when, after warm-up, the RSS (a 5-second median)
// never grows more than 10 % over its value at the end of warm-up, no
// request got a 5xx or any answer other than the one its kind expects, the
// achieved rate is the target rate, and every piece of work accepted
// reaches the state it must end in, processed exactly once, with the queues
// empty; then the daemon still stops cleanly on SIGTERM.
//
// The load is open-loop: each client thread owns every n-th slot of one
// schedule (slot k at start + k / rate) and waits for its slot's deadline,
// so a slow answer delays that thread, not the rate the schedule asks for;
// the achieved rate and the share of late slots show how well it kept up.
//
// For a closer look: ORDERPAY_SOAK_SECONDS=N runs N seconds of load,
// ORDERPAY_SOAK_TRACE=1 prints every RSS sample to stderr.
#include "Daemon.h"
#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

using namespace e2e;

namespace {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------- plan

struct Plan {
    std::chrono::seconds duration;
    double rate;                  // requests per second, all client threads together
    int threads;                  // client threads, one keep-alive connection each
    std::chrono::seconds warmUp;  // RSS growth is measured from its end
    std::chrono::seconds settle;  // how long the work may take to finish after the load
};

Plan plan()
{
    const char* scale = std::getenv("ORDERPAY_RELIABILITY_SCALE");
    const bool isLong = scale && std::string(scale) == "long";
    Plan p{};
    p.duration = isLong ? std::chrono::seconds(600) : std::chrono::seconds(60);
    // For a look at a size of one's own: ORDERPAY_SOAK_SECONDS=N.
    if (const char* seconds = std::getenv("ORDERPAY_SOAK_SECONDS"); seconds && std::atoi(seconds) > 0)
        p.duration = std::chrono::seconds(std::atoi(seconds));
    p.rate = 200;
    // 25 requests/s each: an answer may take 40 ms before a thread lags.
    p.threads = 8;
    // The first 20 % of the run, at least 10 s: caches, pools and arenas fill.
    p.warmUp = std::max(std::chrono::seconds(10), p.duration / 5);
    p.settle = std::chrono::seconds(120);
    return p;
}

// ---------------------------------------------------------------- HTTP

struct Answer {
    int status = 0;
    std::string body;
    bool replayed = false;  // Idempotent-Replayed: true

    Poco::JSON::Object::Ptr object() const
    {
        try {
            auto v = parseJson(body);
            if (v.type() == typeid(Poco::JSON::Object::Ptr)) return v.extract<Poco::JSON::Object::Ptr>();
        } catch (const std::exception&) {
            // not JSON: null below
        }
        return {};
    }
    std::string describe() const
    {
        return "HTTP " + std::to_string(status) + " " + body.substr(0, 300);
    }
};

// One keep-alive connection to the daemon (HttpClient opens one per
// request; a soak should look like real clients, which reuse them).
class Connection {
public:
    explicit Connection(unsigned short port) : session_("127.0.0.1", port)
    {
        session_.setKeepAlive(true);
        session_.setTimeout(Poco::Timespan(30, 0));
    }

    // Throws on a transport error (the connection is then reopened by the
    // next request).
    Answer send(const std::string& method, const std::string& path, const std::string& body = {},
                const std::string& idempotencyKey = {}, const std::string& contentType = "application/json")
    {
        try {
            Poco::Net::HTTPRequest req(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
            req.setKeepAlive(true);
            if (!idempotencyKey.empty()) req.set("Idempotency-Key", idempotencyKey);
            if (method == "POST") {
                if (!body.empty()) req.setContentType(contentType);
                req.setContentLength(static_cast<std::streamsize>(body.size()));
            }
            std::ostream& out = session_.sendRequest(req);
            out << body;
            Poco::Net::HTTPResponse resp;
            std::istream& in = session_.receiveResponse(resp);
            Answer a;
            a.status = static_cast<int>(resp.getStatus());
            Poco::StreamCopier::copyToString(in, a.body);
            a.replayed = resp.get("Idempotent-Replayed", "") == "true";
            return a;
        } catch (...) {
            session_.reset();
            throw;
        }
    }

private:
    Poco::Net::HTTPClientSession session_;
};

// ---------------------------------------------------------------- the daemon's side

long vmRssKb(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
    }
    return -1;
}

struct QueueDepths {
    long pending = 0;  // ready + in flight, all queues
    long dead = 0;
    bool seen = false; // the metric was there at all
};

// The value of an unlabelled metric in /metrics' text, or -1 if it is not there.
double metricValue(const std::string& metrics, const std::string& name)
{
    const std::string prefix = "\n" + name + " ";
    const auto at = metrics.find(prefix);
    return at == std::string::npos ? -1 : std::strtod(metrics.c_str() + at + prefix.size(), nullptr);
}

QueueDepths queueDepths(const std::string& metrics)
{
    QueueDepths q;
    std::istringstream lines(metrics);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.rfind("orderpay_queue_depth{", 0) != 0) continue;
        q.seen = true;
        const long n = std::strtol(line.c_str() + line.rfind(' ') + 1, nullptr, 10);
        if (line.find("state=\"dead\"") != std::string::npos) q.dead += n;
        else q.pending += n;
    }
    return q;
}

// ---------------------------------------------------------------- traffic

// What a client does with an order it created: decided at creation, so the
// answer every later request gets, and the state the order ends in, are known.
enum class Role { Leave, Pay, Mismatch, Cancel };

struct TrackedOrder {
    std::string id;
    Role role = Role::Leave;
    std::int64_t total = 0;
    std::string key;        // Idempotency-Key, if it was created with one
    std::string body;       // the request body (for replays)
    std::string paymentId;  // the payment sent for it, if any
    bool cancelled = false;
    bool seenAwaiting = false;
    bool seenPaid = false;
};

enum class Kind {
    CreateOrder,  // 202
    CreateKeyed,  // 202, with an Idempotency-Key
    Replay,       // 202 Idempotent-Replayed, the same order
    KeyConflict,  // 422: a used key with another body
    Pay,          // 202: matching (role Pay) or mismatching (role Mismatch)
    PayFinished,  // 409: the order is paid or cancelled
    Cancel,       // 200: an awaiting_payment order
    CancelAgain,  // 409
    GetOrder,     // 200
    GetPayment,   // 200
    List,         // 200, following `next`
    Health,       // 200
    Metrics,      // 200
    BadInput,     // the 4xx of each kind of bad input
    Count
};

constexpr std::array<const char*, static_cast<std::size_t>(Kind::Count)> kKindNames{
    "create", "create_keyed", "replay", "key_conflict", "pay", "pay_finished", "cancel",
    "cancel_again", "get_order", "get_payment", "list", "health", "metrics", "bad_input"};

// Shares of the traffic, in percent.
constexpr std::array<int, static_cast<std::size_t>(Kind::Count)> kWeights{
    18, 7, 4, 1, 15, 2, 3, 1, 16, 6, 10, 4, 1, 12};
static_assert([] {
    int sum = 0;
    for (int w : kWeights) sum += w;
    return sum == 100;
}());

// A well-formed id that names nothing.
const std::string kUnknownOrder = "ord_00000000000000000000000000";
const std::string kUnknownPayment = "pay_00000000000000000000000000";

struct ThreadStats {
    std::uint64_t requests = 0;
    std::uint64_t byClass[6] = {};  // [status / 100]
    std::uint64_t unexpected = 0;
    std::uint64_t errors = 0;       // transport errors: no answer at all
    std::uint64_t late = 0;         // slots started more than 250 ms after their deadline
    long queueMax = 0;              // the most work waiting in the queues, as GET /metrics saw it
    std::array<std::uint64_t, static_cast<std::size_t>(Kind::Count)> byKind{};
    std::vector<float> latencyMs;
    std::vector<std::string> samples;  // the first few unexpected answers
};

// One client thread's traffic. Only this thread touches its orders, so the
// requests on one order are in order and their answers are determined.
class Client {
public:
    Client(unsigned short port, int index) : conn_(port), index_(index), rng_(static_cast<unsigned>(index) + 1) {}

    void run(Clock::time_point start, Clock::time_point end, double rate, int threads)
    {
        std::discrete_distribution<int> kinds(kWeights.begin(), kWeights.end());
        for (std::uint64_t slot = static_cast<std::uint64_t>(index_);; slot += static_cast<std::uint64_t>(threads)) {
            const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(static_cast<double>(slot) / rate));
            if (deadline >= end) break;
            std::this_thread::sleep_until(deadline);
            const auto began = Clock::now();
            if (began - deadline > std::chrono::milliseconds(250)) ++stats.late;
            const Kind kind = static_cast<Kind>(kinds(rng_));
            try {
                perform(kind);
            } catch (const std::exception& e) {
                ++stats.errors;
                note(std::string("transport error: ") + e.what());
            }
            ++stats.requests;
            stats.latencyMs.push_back(
                std::chrono::duration<float, std::milli>(Clock::now() - began).count());
        }
    }

    std::vector<TrackedOrder> orders;
    ThreadStats stats;
    Clock::time_point finished;

private:
    // Sends one request and checks its answer against `expected`.
    Answer exchange(Kind kind, int expected, const std::string& method, const std::string& path,
                    const std::string& body = {}, const std::string& key = {},
                    const std::string& contentType = "application/json")
    {
        ++stats.byKind[static_cast<std::size_t>(kind)];
        Answer a = conn_.send(method, path, body, key, contentType);
        if (a.status >= 100 && a.status < 600) ++stats.byClass[a.status / 100];
        if (a.status != expected) unexpected(kind, method + " " + path + " expected " + std::to_string(expected), a);
        return a;
    }

    void unexpected(Kind kind, const std::string& what, const Answer& a)
    {
        ++stats.unexpected;
        note(std::string(kKindNames[static_cast<std::size_t>(kind)]) + ": " + what + ", got " + a.describe());
    }

    void note(const std::string& text)
    {
        if (stats.samples.size() < 5) stats.samples.push_back(text);
    }

    std::string nextName() { return "soak-" + std::to_string(index_) + "-" + std::to_string(counter_++); }

    // A random valid order body and its total.
    std::pair<std::string, std::int64_t> newOrderBody(const std::string& customer)
    {
        std::vector<Item> items;
        std::int64_t total = 0;
        const int n = std::uniform_int_distribution<int>(1, 3)(rng_);
        for (int i = 0; i < n; ++i) {
            Item item{"SKU-" + std::to_string(std::uniform_int_distribution<int>(1, 500)(rng_)),
                      std::uniform_int_distribution<std::int64_t>(1, 5)(rng_),
                      std::uniform_int_distribution<std::int64_t>(100, 5000)(rng_)};
            total += item.quantity * item.unitAmount;
            items.push_back(item);
        }
        return {orderJson(customer, items, "EUR", {{"channel", "soak"}}), total};
    }

    // Indices of own orders matching `pred`; a random one, or -1.
    template <typename Pred>
    long pickOrder(Pred pred)
    {
        std::vector<std::size_t> candidates;
        for (std::size_t i = 0; i < orders.size(); ++i)
            if (pred(orders[i])) candidates.push_back(i);
        if (candidates.empty()) return -1;
        return static_cast<long>(candidates[std::uniform_int_distribution<std::size_t>(0, candidates.size() - 1)(rng_)]);
    }

    void perform(Kind kind)
    {
        switch (kind) {
        case Kind::CreateOrder:
        case Kind::CreateKeyed: return create(kind);
        case Kind::Replay: return replay();
        case Kind::KeyConflict: return keyConflict();
        case Kind::Pay: return pay();
        case Kind::PayFinished: return payFinished();
        case Kind::Cancel: return cancel();
        case Kind::CancelAgain: return cancelAgain();
        case Kind::GetOrder: return getOrder();
        case Kind::GetPayment: return getPayment();
        case Kind::List: return list();
        case Kind::Health: return health();
        case Kind::Metrics: return metrics();
        case Kind::BadInput: return badInput();
        case Kind::Count: break;
        }
    }

    void create(Kind kind)
    {
        const std::string name = nextName();
        auto [body, total] = newOrderBody(name + "@example.com");
        const std::string key = kind == Kind::CreateKeyed ? name : std::string();
        Answer a = exchange(kind, 202, "POST", "/orders", body, key);
        if (a.status != 202) return;
        auto o = a.object();
        auto id = getString(o, "id");
        if (!id || getString(o, "status").value_or("") != "queued") return unexpected(kind, "a queued order", a);
        TrackedOrder t;
        t.id = *id;
        t.total = total;
        t.key = key;
        t.body = key.empty() ? std::string() : body;
        // Half are paid, a tenth get a payment of the wrong amount, some
        // are cancelled, the rest stay unpaid.
        static constexpr std::array<Role, 20> kRoles{
            Role::Pay,    Role::Pay,      Role::Pay,   Role::Pay,   Role::Pay,   Role::Pay,  Role::Pay,
            Role::Pay,    Role::Pay,      Role::Pay,   Role::Mismatch, Role::Mismatch, Role::Cancel,
            Role::Cancel, Role::Cancel,   Role::Leave, Role::Leave, Role::Leave, Role::Leave, Role::Leave};
        t.role = kRoles[orders.size() % kRoles.size()];
        orders.push_back(std::move(t));
        watch_.push_back(orders.size() - 1);
    }

    void replay()
    {
        const long i = pickOrder([](const TrackedOrder& o) { return !o.key.empty(); });
        if (i < 0) return create(Kind::CreateKeyed);
        const TrackedOrder& o = orders[static_cast<std::size_t>(i)];
        Answer a = exchange(Kind::Replay, 202, "POST", "/orders", o.body, o.key);
        if (a.status != 202) return;
        if (!a.replayed || getString(a.object(), "id").value_or("") != o.id)
            unexpected(Kind::Replay, "a replay of " + o.id, a);
    }

    void keyConflict()
    {
        const long i = pickOrder([](const TrackedOrder& o) { return !o.key.empty(); });
        if (i < 0) return create(Kind::CreateKeyed);
        const TrackedOrder& o = orders[static_cast<std::size_t>(i)];
        exchange(Kind::KeyConflict, 422, "POST", "/orders", newOrderBody("other-" + o.key + "@example.com").first,
                 o.key);
    }

    void pay()
    {
        const long i = pickOrder([](const TrackedOrder& o) {
            return o.paymentId.empty() && (o.role == Role::Pay || o.role == Role::Mismatch);
        });
        if (i < 0) return getOrder();
        TrackedOrder& o = orders[static_cast<std::size_t>(i)];
        static constexpr std::array<const char*, 4> kMethods{"card", "bank_transfer", "wallet", "cash"};
        const std::string body = paymentJson(o.id, o.role == Role::Mismatch ? o.total + 1 : o.total, "EUR",
                                             kMethods[counter_ % kMethods.size()], nextName());
        Answer a = exchange(Kind::Pay, 202, "POST", "/payment/confirm", body);
        if (a.status != 202) return;
        auto id = getString(a.object(), "id");
        if (!id) return unexpected(Kind::Pay, "a payment", a);
        o.paymentId = *id;
        payments_.push_back(*id);
        if (o.role == Role::Pay) watch_.push_back(static_cast<std::size_t>(i));
    }

    void payFinished()
    {
        const long i = pickOrder([](const TrackedOrder& o) { return o.seenPaid || o.cancelled; });
        if (i < 0) return getOrder();
        const TrackedOrder& o = orders[static_cast<std::size_t>(i)];
        exchange(Kind::PayFinished, 409, "POST", "/payment/confirm", paymentJson(o.id, o.total, "EUR", "card", nextName()));
    }

    void cancel()
    {
        const long i = pickOrder(
            [](const TrackedOrder& o) { return o.role == Role::Cancel && o.seenAwaiting && !o.cancelled; });
        if (i < 0) return getOrder();
        TrackedOrder& o = orders[static_cast<std::size_t>(i)];
        Answer a = exchange(Kind::Cancel, 200, "POST", "/orders/" + o.id + "/cancel");
        if (a.status != 200) return;
        o.cancelled = true;
        if (getString(a.object(), "status").value_or("") != "cancelled")
            unexpected(Kind::Cancel, "the cancelled order", a);
    }

    void cancelAgain()
    {
        const long i = pickOrder([](const TrackedOrder& o) { return o.cancelled || o.seenPaid; });
        if (i < 0) return getOrder();
        exchange(Kind::CancelAgain, 409, "POST", "/orders/" + orders[static_cast<std::size_t>(i)].id + "/cancel");
    }

    // Reads orders whose next step waits on their status first (to cancel
    // or pay again), else any.
    void getOrder()
    {
        if (orders.empty()) return health();
        std::size_t i = 0;
        if (!watch_.empty()) {
            i = watch_.front();
            watch_.pop_front();
        } else {
            i = std::uniform_int_distribution<std::size_t>(0, orders.size() - 1)(rng_);
        }
        TrackedOrder& o = orders[i];
        Answer a = exchange(Kind::GetOrder, 200, "GET", "/orders/" + o.id);
        if (a.status != 200) return;
        auto obj = a.object();
        const std::string status = getString(obj, "status").value_or("");
        const bool known = status == "queued" || status == "processing" || status == "awaiting_payment" ||
                           (status == "paid" && o.role == Role::Pay && !o.paymentId.empty()) ||
                           (status == "cancelled" && o.cancelled);
        if (getString(obj, "id").value_or("") != o.id || !known || (o.cancelled && status != "cancelled") ||
            (o.seenPaid && status != "paid"))
            return unexpected(Kind::GetOrder, "order " + o.id + " in a state it may be in", a);
        if (status == "awaiting_payment") o.seenAwaiting = true;
        if (status == "paid") o.seenPaid = true;
        const bool waiting = (o.role == Role::Cancel && !o.seenAwaiting) ||
                             (o.role == Role::Pay && !o.paymentId.empty() && !o.seenPaid);
        if (waiting) watch_.push_back(i);
    }

    void getPayment()
    {
        if (payments_.empty()) return getOrder();
        const std::string& id = payments_[std::uniform_int_distribution<std::size_t>(0, payments_.size() - 1)(rng_)];
        Answer a = exchange(Kind::GetPayment, 200, "GET", "/payments/" + id);
        if (a.status == 200 && getString(a.object(), "id").value_or("") != id)
            unexpected(Kind::GetPayment, "payment " + id, a);
    }

    // A first page of a filtered list, then its next pages on the
    // following list slots (at most three pages deep).
    void list()
    {
        std::string path = next_;
        if (path.empty() || pages_ >= 3) {
            static constexpr std::array<const char*, 5> kStatuses{"", "awaiting_payment", "paid", "cancelled", "queued"};
            const std::string status = kStatuses[std::uniform_int_distribution<std::size_t>(0, kStatuses.size() - 1)(rng_)];
            path = "/orders?limit=" + std::to_string(std::uniform_int_distribution<int>(5, 50)(rng_)) +
                   (status.empty() ? "" : "&status=" + status);
            pages_ = 0;
        }
        next_.clear();
        Answer a = exchange(Kind::List, 200, "GET", path);
        if (a.status != 200) return;
        auto obj = a.object();
        if (!getArray(obj, "orders")) return unexpected(Kind::List, "a list of orders", a);
        ++pages_;
        next_ = getString(obj, "next").value_or("");
    }

    void health()
    {
        exchange(Kind::Health, 200, "GET", (counter_++ % 2) ? "/health/ready" : "/health/live");
    }

    void metrics()
    {
        Answer a = exchange(Kind::Metrics, 200, "GET", "/metrics");
        if (a.status == 200) stats.queueMax = std::max(stats.queueMax, queueDepths(a.body).pending);
    }

    // Each kind of bad input in turn, with the 4xx it must get.
    void badInput()
    {
        const std::string valid = orderJson("bad-" + std::to_string(index_) + "@example.com");
        switch (bad_++ % 12) {
        case 0: exchange(Kind::BadInput, 400, "POST", "/orders", R"({"customer": "x", "items": [)"); break;
        case 1: exchange(Kind::BadInput, 422, "POST", "/orders", orderJson("q@example.com", {{"SKU-1", 0, 100}})); break;
        case 2: exchange(Kind::BadInput, 404, "GET", "/orders/" + kUnknownOrder); break;
        case 3: exchange(Kind::BadInput, 404, "GET", "/payments/" + kUnknownPayment); break;
        case 4: exchange(Kind::BadInput, 404, "POST", "/payment/confirm", paymentJson(kUnknownOrder, 100)); break;
        case 5: exchange(Kind::BadInput, 422, "GET", "/orders?status=lost"); break;
        case 6: exchange(Kind::BadInput, 405, "DELETE", "/orders"); break;
        case 7: exchange(Kind::BadInput, 415, "POST", "/orders", valid, {}, "text/plain"); break;
        case 8: exchange(Kind::BadInput, 404, "POST", "/orders/" + kUnknownOrder + "/cancel"); break;
        case 9: exchange(Kind::BadInput, 404, "GET", "/no/such/route"); break;
        case 10:
            exchange(Kind::BadInput, 422, "POST", "/orders", valid.substr(0, valid.rfind('}')) + R"(, "colour": "red"})");
            break;
        default:
            exchange(Kind::BadInput, 422, "POST", "/payment/confirm",
                     paymentJson(kUnknownOrder, 100, "EUR", "barter", "psp-1"));
            break;
        }
    }

    Connection conn_;
    int index_;
    std::mt19937_64 rng_;
    std::uint64_t counter_ = 0;
    std::uint64_t bad_ = 0;
    std::deque<std::size_t> watch_;
    std::vector<std::string> payments_;
    std::string next_;
    int pages_ = 0;
};

// ---------------------------------------------------------------- the end state

// Why `o` is not yet where it must end, or empty if it is. Also checks that
// it was processed exactly once: one step_completed per step, one status
// event per status.
std::string notFinished(Connection& conn, const TrackedOrder& o, bool& duplicate)
{
    Answer a = conn.send("GET", "/orders/" + o.id);
    auto obj = a.object();
    if (a.status != 200 || !obj) return a.describe();
    const std::string expected = o.cancelled                             ? "cancelled"
                                 : (o.role == Role::Pay && !o.paymentId.empty()) ? "paid"
                                                                                 : "awaiting_payment";
    const std::string status = getString(obj, "status").value_or("");
    if (status != expected) return "status " + status + ", expected " + expected;
    if (!o.paymentId.empty()) {
        auto payments = getArray(obj, "payments");
        bool found = false;
        for (std::size_t i = 0; payments && i < payments->size(); ++i) {
            auto p = arrayObject(payments, i);
            if (getString(p, "id").value_or("") != o.paymentId) continue;
            found = true;
            const std::string ps = getString(p, "status").value_or("");
            if (o.role == Role::Pay && ps != "succeeded") return "payment " + o.paymentId + " is " + ps;
            if (o.role == Role::Mismatch &&
                (ps != "rejected" || getString(p, "reason").value_or("") != "amount_mismatch"))
                return "payment " + o.paymentId + " is " + ps + " (" + getString(p, "reason").value_or("") + ")";
        }
        if (!found) return "payment " + o.paymentId + " is missing from the order";
    }
    auto ev = getArray(obj, "events");
    std::map<std::string, int> completed, statuses;
    for (std::size_t i = 0; ev && i < ev->size(); ++i) {
        auto e = arrayObject(ev, i);
        const std::string type = getString(e, "type").value_or("");
        if (type == "step_completed") ++completed[getString(e, "step").value_or("")];
        if (type == "status") ++statuses[getString(e, "status").value_or("")];
    }
    bool once = completed.size() == 3;
    for (const auto& [step, n] : completed) once = once && n == 1;
    for (const auto& [s, n] : statuses) once = once && n == 1;
    if (!once) {
        duplicate = true;
        return "processed more (or less) than once: " + stringify(getArray(obj, "events"));
    }
    return {};
}

double percentile(std::vector<float> v, double p)
{
    if (v.empty()) return 0;
    const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
    return v[k];
}

} // namespace

TEST_CASE("Soak: mixed traffic at a fixed rate keeps RSS flat, gets no 5xx and completes all work", "[soak]")
{
    const Plan p = plan();
    // Work takes a little time (8 ms an order, in three steps), two workers a queue.
    Daemon d({"orders.processing_ms=8", "orders.workers=2", "payments.workers=2"});
    const std::string broker = usingRabbitMq() ? "rabbitmq" : "embedded";
    const pid_t pid = d.pid();
    REQUIRE(vmRssKb(pid) > 0);

    std::vector<std::unique_ptr<Client>> clients;
    for (int t = 0; t < p.threads; ++t) clients.push_back(std::make_unique<Client>(d.port(), t));

    // The load, and the memory sampled once a second against the same clock:
    // the RSS, and how much of it is SQLite's heap (from /metrics).
    const auto start = Clock::now() + std::chrono::milliseconds(200);
    const auto end = start + p.duration;
    struct Sample {
        double at;      // seconds since start
        long rssKb;
        long sqliteKb;  // -1 when /metrics did not answer
    };
    std::vector<Sample> rss;
    std::atomic<bool> loadDone{false};
    std::thread sampler([&] {
        Connection metrics(d.port());
        for (auto next = start; !loadDone; next += std::chrono::seconds(1)) {
            std::this_thread::sleep_until(next);  // a fixed 1 s schedule of deadlines
            const double at = std::chrono::duration<double>(Clock::now() - start).count();
            const long rssKb = vmRssKb(pid);
            long sqliteKb = -1;
            try {
                const Answer a = metrics.send("GET", "/metrics");
                const double bytes = a.status == 200 ? metricValue(a.body, "orderpay_sqlite_memory_bytes") : -1;
                if (bytes >= 0) sqliteKb = static_cast<long>(bytes / 1024);
            } catch (const std::exception&) {
            }
            rss.push_back({at, rssKb, sqliteKb});
        }
    });
    std::vector<std::thread> threads;
    for (auto& c : clients) {
        threads.emplace_back([&, client = c.get()] {
            client->run(start, end, p.rate, p.threads);
            client->finished = Clock::now();
        });
    }
    for (auto& t : threads) t.join();
    loadDone = true;
    sampler.join();

    // Totals.
    ThreadStats total;
    auto lastFinish = start;
    std::vector<float> latencies;
    std::vector<const TrackedOrder*> orders;
    std::size_t payments = 0;
    for (auto& c : clients) {
        const ThreadStats& s = c->stats;
        total.requests += s.requests;
        for (int k = 0; k < 6; ++k) total.byClass[k] += s.byClass[k];
        total.unexpected += s.unexpected;
        total.errors += s.errors;
        total.late += s.late;
        total.queueMax = std::max(total.queueMax, s.queueMax);
        for (std::size_t k = 0; k < s.byKind.size(); ++k) total.byKind[k] += s.byKind[k];
        latencies.insert(latencies.end(), s.latencyMs.begin(), s.latencyMs.end());
        for (const auto& text : s.samples) UNSCOPED_INFO(text);
        lastFinish = std::max(lastFinish, c->finished);
        for (const auto& o : c->orders) {
            orders.push_back(&o);
            if (!o.paymentId.empty()) ++payments;
        }
    }
    const double elapsed = std::chrono::duration<double>(lastFinish - start).count();
    const double achieved = static_cast<double>(total.requests) / elapsed;

    // RSS: its value when warm-up ends, and the most it reached after. Both
    // are medians of 5 samples (the sample and the 4 before it): a leak or
    // an unbounded cache is sustained and shows in them; a one-second peak
    // of answers in flight does not (rss_peak_kb reports the raw maximum).
    // SQLite's page caches grow with the database until they reach the
    // daemon's cap on SQLite's heap; how soon depends on how fast the
    // database grows, which is not what this measures. So the growth that
    // must stay small is that of the rest (RSS minus SQLite's heap), and
    // SQLite's heap is held to its cap on its own (below).
    const double warm = static_cast<double>(p.warmUp.count());
    auto median5 = [&](std::size_t i, auto value) {
        std::vector<long> window;
        for (std::size_t k = i >= 4 ? i - 4 : 0; k <= i; ++k) window.push_back(value(rss[k]));
        std::nth_element(window.begin(), window.begin() + static_cast<long>(window.size() / 2), window.end());
        return window[window.size() / 2];
    };
    long rssWarm = -1, rssMax = -1, rssEnd = -1, rssPeak = -1;
    long restWarm = -1, restMax = -1, sqliteWarm = -1, sqliteMax = -1;
    std::size_t samplesAfterWarm = 0, sqliteMissing = 0;
    for (std::size_t i = 0; i < rss.size(); ++i) {
        if (rss[i].at < warm) continue;
        if (rss[i].sqliteKb < 0) ++sqliteMissing;
        const long total = median5(i, [](const Sample& s) { return s.rssKb; });
        const long rest = median5(i, [](const Sample& s) { return s.rssKb - std::max(0L, s.sqliteKb); });
        const long sqlite = median5(i, [](const Sample& s) { return s.sqliteKb; });
        if (rssWarm < 0) {
            rssWarm = total;
            restWarm = rest;
            sqliteWarm = sqlite;
        }
        rssMax = std::max(rssMax, total);
        restMax = std::max(restMax, rest);
        sqliteMax = std::max(sqliteMax, sqlite);
        rssPeak = std::max(rssPeak, rss[i].rssKb);
        rssEnd = rss[i].rssKb;
        ++samplesAfterWarm;
    }
    auto growth = [](long from, long to) {
        return from > 0 ? 100.0 * static_cast<double>(to - from) / static_cast<double>(from) : -1;
    };
    const double growthPct = growth(rssWarm, rssMax);
    const double restGrowthPct = growth(restWarm, restMax);

    // Every piece of work completed: poll, up to a deadline, until each order
    // is in the state it must end in and the queues are empty.
    const auto settleStart = Clock::now();
    const auto settleDeadline = settleStart + p.settle;
    std::vector<const TrackedOrder*> pending = orders;
    std::vector<std::string> why;
    std::atomic<std::size_t> duplicates{0};
    QueueDepths depths;
    std::string lastMetrics;
    for (;;) {
        std::vector<std::vector<const TrackedOrder*>> still(4);
        std::vector<std::vector<std::string>> reasons(4);
        std::vector<std::thread> checkers;
        std::atomic<std::size_t> nextIndex{0};
        for (std::size_t t = 0; t < still.size(); ++t) {
            checkers.emplace_back([&, t] {
                Connection conn(d.port());
                for (std::size_t i = nextIndex++; i < pending.size(); i = nextIndex++) {
                    bool duplicate = false;
                    std::string reason;
                    try {
                        reason = notFinished(conn, *pending[i], duplicate);
                    } catch (const std::exception& e) {
                        reason = e.what();
                    }
                    if (duplicate) ++duplicates;
                    if (reason.empty()) continue;
                    still[t].push_back(pending[i]);
                    reasons[t].push_back(pending[i]->id + ": " + reason);
                }
            });
        }
        for (auto& c : checkers) c.join();
        pending.clear();
        why.clear();
        for (std::size_t t = 0; t < still.size(); ++t) {
            pending.insert(pending.end(), still[t].begin(), still[t].end());
            why.insert(why.end(), reasons[t].begin(), reasons[t].end());
        }
        try {
            Connection conn(d.port());
            lastMetrics = conn.send("GET", "/metrics").body;
            depths = queueDepths(lastMetrics);
        } catch (const std::exception& e) {
            lastMetrics = e.what();
            depths = QueueDepths{};
        }
        const bool done = pending.empty() && depths.seen && depths.pending == 0;
        if (done || duplicates > 0 || Clock::now() >= settleDeadline) break;
        // Poll again in a second, never past the deadline.
        std::this_thread::sleep_until(std::min(settleDeadline, Clock::now() + std::chrono::seconds(1)));
    }
    const double settleSeconds = std::chrono::duration<double>(Clock::now() - settleStart).count();
    const double sqliteHighwater = metricValue(lastMetrics, "orderpay_sqlite_memory_highwater_bytes");
    const double sqliteLimit = metricValue(lastMetrics, "orderpay_sqlite_memory_limit_bytes");

    std::ostringstream result;
    result << std::fixed << std::setprecision(1) << "RESULT campaign=soak broker=" << broker
           << " seconds=" << p.duration.count() << " rate=" << p.rate << "/s achieved=" << achieved << "/s"
           << " requests=" << total.requests << " 2xx=" << total.byClass[2] << " 4xx=" << total.byClass[4]
           << " 5xx=" << total.byClass[5] << " unexpected=" << total.unexpected << " errors=" << total.errors
           << " late_pct=" << 100.0 * static_cast<double>(total.late) / static_cast<double>(std::max<std::uint64_t>(1, total.requests))
           << " p50_ms=" << percentile(latencies, 0.50) << " p99_ms=" << percentile(latencies, 0.99)
           << " max_ms=" << percentile(latencies, 1.0) << " rss_start_kb=" << (rss.empty() ? -1 : rss.front().rssKb)
           << " rss_warm_kb=" << rssWarm << " rss_max_kb=" << rssMax << " rss_peak_kb=" << rssPeak << " rss_end_kb=" << rssEnd
           << " growth_pct=" << growthPct << " rest_warm_kb=" << restWarm << " rest_max_kb=" << restMax
           << " rest_growth_pct=" << restGrowthPct << " sqlite_warm_kb=" << sqliteWarm << " sqlite_max_kb=" << sqliteMax
           << " sqlite_highwater_kb=" << static_cast<long>(sqliteHighwater / 1024)
           << " sqlite_limit_kb=" << static_cast<long>(sqliteLimit / 1024) << " queue_max=" << total.queueMax << " orders=" << orders.size() << " payments=" << payments
           << " incomplete=" << pending.size() << " duplicates=" << duplicates.load()
           << " queue_pending=" << depths.pending << " dead=" << depths.dead << " settle_s=" << settleSeconds;
    std::cout << result.str() << std::endl;
    if (std::getenv("ORDERPAY_SOAK_TRACE")) {
        for (const auto& s : rss) std::cerr << "rss " << s.at << " " << s.rssKb << " " << s.sqliteKb << "\n";
    }

    INFO(result.str());
    {
        std::ostringstream mix;
        for (std::size_t k = 0; k < total.byKind.size(); ++k) mix << kKindNames[k] << "=" << total.byKind[k] << " ";
        INFO("requests by kind: " << mix.str());
        std::ostringstream samples;
        for (const auto& s : rss) samples << std::setprecision(0) << std::fixed << s.at << "s:" << s.rssKb << "/" << s.sqliteKb << " ";
        INFO("RSS/SQLite heap samples (kB): " << samples.str());
        for (std::size_t i = 0; i < std::min<std::size_t>(5, why.size()); ++i) UNSCOPED_INFO("incomplete " << why[i]);
        INFO("daemon log: " << d.logTail(2000));

        CHECK(d.running());
        CHECK(total.errors == 0);
        CHECK(total.byClass[5] == 0);
        CHECK(total.unexpected == 0);
        // The load generator kept the rate: the schedule, not the daemon's
        // speed, decided how many requests were sent.
        CHECK(achieved >= 0.95 * p.rate);
        // Enough traffic of each kind to mean something.
        CHECK(orders.size() >= static_cast<std::size_t>(0.2 * p.rate * static_cast<double>(p.duration.count())));
        CHECK(payments >= orders.size() / 3);
        // Memory after warm-up, sampled all along.
        CHECK(samplesAfterWarm + 3 >= static_cast<std::size_t>(p.duration.count() - p.warmUp.count()));
        REQUIRE(rssWarm > 0);
        CHECK(sqliteMissing == 0);
        // The rest: never 10 % over its value when warm-up ended.
        REQUIRE(restWarm > 0);
        CHECK(static_cast<double>(restMax) <= 1.10 * static_cast<double>(restWarm));
        // SQLite's heap: under its cap all along (what it holds beyond its
        // page caches, schemas and statements, may take it a little past).
        REQUIRE(sqliteLimit > 0);
        CHECK(sqliteHighwater <= 1.25 * sqliteLimit);
        // Every piece of work completed, exactly once, and nothing left queued or dead-lettered.
        CHECK(duplicates == 0);
        CHECK(pending.empty());
        INFO("metrics: " << lastMetrics.substr(0, 3000));
        CHECK(depths.seen);
        CHECK(depths.pending == 0);
        CHECK(depths.dead == 0);
    }
    // And after all that it still stops cleanly.
    CHECK(d.terminate(30s) == 0);
}
