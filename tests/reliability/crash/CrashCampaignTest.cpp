// Crash campaign (guarantees 1 and 2).
//
// Four clients post orders and payments continuously (about 50 requests a
// second each), every POST with an Idempotency-Key; a request whose answer
// was lost is sent again, same key, same body, until it is answered.
// Meanwhile orderpayd is SIGKILLed at a random moment and started again, over
// and over; with RabbitMQ the broker (a private node: the suite's node serves
// other tests) is SIGKILLed and restarted too, in turns together with the
// daemon (which comes back first and is killed again while the broker boots)
// and while the daemon lives on (it must reconnect by itself). Afterwards, over HTTP: every acknowledged order and
// payment exists, nothing exists twice, every order reached its final state with each step and each status change
// recorded once, no order or reference was charged twice, every payment ended as its amount and reference say. Then,
// after a last SIGKILL, the database itself: PRAGMA integrity_check, and each step's effect (ledger, stock
// reservations, invoice) present exactly once.
//
// CI size by default; ORDERPAY_RELIABILITY_SCALE=long runs 500 iterations.
// The figures go to stdout as one line:
//   RESULT campaign=crash broker=<kind> iterations=.. ... lost=0 duplicates=0 ...
#include "Daemon.h"
#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <Poco/Data/SQLite/Connector.h>
#include <Poco/Data/Session.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

using namespace e2e;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

struct Scale {
    int iterations;
    int firstBrokerKill; // iteration of the first RabbitMQ kill
    int brokerKillEvery; // iterations between RabbitMQ kills (at least)
    int burst = 0;       // orders each client posts at once before its steady pace
};

bool longScale()
{
    const char* scale = std::getenv("ORDERPAY_RELIABILITY_SCALE");
    return scale && std::string(scale) == "long";
}

Scale campaignScale() { return longScale() ? Scale{500, 3, 25} : Scale{30, 3, 14}; }

/// At the shipped 6 s per order, after a burst: thousands of orders wait
/// in their timers when each kill lands.
Scale pacedScale() { return longScale() ? Scale{60, 3, 10, 5000} : Scale{10, 3, 3, 750}; }

double secondsSince(Clock::time_point start)
{
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// ---------------------------------------------------------------- RabbitMQ

// Runs `rabbitmq-node COMMAND DIR` and returns its exit status and output.
std::pair<int, std::string> rabbitMqNodeCommand(const std::string& command, const std::string& dir,
                                                const std::string& arg = {})
{
    const std::string out = dir + "." + command + ".out";
    const std::string cmd = "'" + rabbitMqNodeScript() + "' " + command + " '" + dir + "'" +
                            (arg.empty() ? "" : " '" + arg + "'") + " > '" + out + "' 2>&1";
    const int status = std::system(cmd.c_str());
    const int code = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
    std::string output = readFile(out);
    ::unlink(out.c_str());
    return {code, output};
}

// A RabbitMQ node of the campaign's own, which it may kill: under the suite
// node's folder (DIR/private/<name>/) so that "rabbitmq: stop" ends it too if
// this process dies; the script's owner watcher ends it as well.
class CampaignRabbitMq {
public:
    CampaignRabbitMq()
    {
        const fs::path base = fs::path(rabbitMqNode().dir) / "private";
        fs::create_directories(base);
        std::string tmpl = (base / "crash-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        dir_ = tmpl;
        auto [code, output] = rabbitMqNodeCommand("start", dir_, std::to_string(::getpid()));
        INFO("rabbitmq-node start " << dir_ << ":\n" << output);
        REQUIRE(code == 0);
        node_ = readRabbitMqEnv(dir_ + "/env");
    }
    ~CampaignRabbitMq()
    {
        if (restarter_.joinable()) restarter_.join();
        auto [code, output] = rabbitMqNodeCommand("stop", dir_);
        if (code != 0) std::cerr << "rabbitmq-node stop " << dir_ << " failed:\n" << output << "\n";
        if (std::uncaught_exceptions() > 0) {
            std::string log = readFile(dir_ + "/log/" + node_.name + ".log");
            std::cerr << "---- RabbitMQ node log tail (" << dir_ << "/log) ----\n"
                      << (log.size() > 3000 ? log.substr(log.size() - 3000) : log) << "\n---- end ----\n";
        } else if (!std::getenv("ORDERPAY_E2E_KEEP")) {
            std::error_code ec;
            fs::remove_all(dir_, ec);
        }
    }
    CampaignRabbitMq(const CampaignRabbitMq&) = delete;
    CampaignRabbitMq& operator=(const CampaignRabbitMq&) = delete;

    std::vector<std::string> defines() const { return {"broker.kind=rabbitmq", "broker.rabbitmq.uri=" + node_.uri}; }

    // SIGKILL to the broker's VM.
    void kill()
    {
        REQUIRE_FALSE(restarting());
        auto [code, output] = rabbitMqNodeCommand("kill", dir_);
        INFO("rabbitmq-node kill " << dir_ << ":\n" << output);
        REQUIRE(code == 0);
        up_ = false;
    }
    // Starts it again on its data and returns once it serves.
    void restart()
    {
        auto [code, output] = rabbitMqNodeCommand("restart", dir_);
        INFO("rabbitmq-node restart " << dir_ << ":\n" << output);
        REQUIRE(code == 0);
        up_ = true;
    }
    // The same in a thread of its own: the campaign goes on meanwhile.
    void restartInBackground()
    {
        if (restarter_.joinable()) restarter_.join();
        restarting_ = true;
        restarter_ = std::thread([this] {
            auto result = rabbitMqNodeCommand("restart", dir_);
            std::lock_guard<std::mutex> lock(mu_);
            restartResult_ = result;
            up_ = result.first == 0;
            restarting_ = false;
        });
    }
    bool restarting() const { return restarting_; }
    bool up() const { return up_; }
    // Waits for a background restart; REQUIREs that it worked.
    void finishRestart()
    {
        if (restarter_.joinable()) restarter_.join();
        std::lock_guard<std::mutex> lock(mu_);
        if (!restartResult_) return;
        INFO("rabbitmq-node restart " << dir_ << ":\n" << restartResult_->second);
        REQUIRE(restartResult_->first == 0);
    }

private:
    std::string dir_;
    RabbitMqNode node_;
    std::atomic<bool> up_{true};
    std::atomic<bool> restarting_{false};
    std::thread restarter_;
    std::mutex mu_;
    std::optional<std::pair<int, std::string>> restartResult_;
};

// The `broker` component of GET /health/ready ("" if the daemon did not answer).
std::string brokerHealth(const HttpClient& c)
{
    try {
        auto o = c.get("/health/ready").jsonObject();
        return o ? getString(getObject(o, "components"), "broker").value_or("") : "";
    } catch (const std::exception&) {
        return {};
    }
}

// ---------------------------------------------------------------- traffic

// What a client does with an order once it is acknowledged.
enum class Plan {
    Pay,             // the right amount: succeeded, order paid
    Underpay,        // one cent short: rejected (amount_mismatch)
    UnderpayThenPay, // both, the second sent once the first is acknowledged
    ReuseReference,  // the right amount with another order's reference: one of the two is rejected
    NoPayment,       // stays awaiting_payment
};

Plan pickPlan(std::mt19937_64& rng)
{
    const int r = std::uniform_int_distribution<int>(0, 99)(rng);
    if (r < 55) return Plan::Pay;
    if (r < 70) return Plan::Underpay;
    if (r < 82) return Plan::UnderpayThenPay;
    if (r < 90) return Plan::ReuseReference;
    return Plan::NoPayment;
}

struct OrderRecord {
    std::string key; // Idempotency-Key; the customer is key@crash.example
    std::string id;
    std::int64_t total = 0;
    std::size_t items = 0;
};

struct PaymentRecord {
    std::string key;
    std::string id;
    std::string orderId;
    std::string reference;
    std::int64_t amount = 0;
    bool matching = false; // amount == the order's total
};

struct PaymentTask {
    std::size_t order = 0; // index into Ledger::orders
    bool matching = true;
    bool thenPay = false; // after it is acknowledged, queue a matching one
    bool reuseReference = false;
};

// Everything the clients got acknowledged, and what they still have to send.
class Ledger {
public:
    std::atomic<std::uint64_t> requests{0};    // HTTP attempts
    std::atomic<std::uint64_t> retries{0};     // attempts that got no answer (daemon down) or a 503
    std::atomic<std::uint64_t> unavailable{0}; // of which 503
    std::atomic<std::uint64_t> replayed{0};    // answers with Idempotent-Replayed: true
    std::atomic<std::uint64_t> acknowledged{0};
    std::atomic<std::uint64_t> ackedWhileBrokerDown{0};
    std::atomic<bool> brokerDown{false};
    std::atomic<bool> abort{false}; // the test failed: stop retrying

    void addOrder(const OrderRecord& order, Plan plan)
    {
        std::lock_guard<std::mutex> lock(mu_);
        orders_.push_back(order);
        const std::size_t index = orders_.size() - 1;
        switch (plan) {
        case Plan::Pay: todo_.push_back({index, true, false, false}); break;
        case Plan::Underpay: todo_.push_back({index, false, false, false}); break;
        case Plan::UnderpayThenPay: todo_.push_back({index, false, true, false}); break;
        case Plan::ReuseReference: todo_.push_back({index, true, false, true}); break;
        case Plan::NoPayment: break;
        }
        acked();
    }
    void addPayment(const PaymentRecord& payment, const PaymentTask& task)
    {
        std::lock_guard<std::mutex> lock(mu_);
        payments_.push_back(payment);
        if (task.thenPay) todo_.push_back({task.order, true, false, false});
        if (payment.matching && !task.reuseReference) references_.push_back(payment.reference);
        acked();
    }
    // The oldest payment still to send, with probability 1/2.
    std::optional<PaymentTask> takePaymentTask(std::mt19937_64& rng)
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (todo_.empty() || std::uniform_int_distribution<int>(0, 1)(rng) == 0) return std::nullopt;
        PaymentTask task = todo_.front();
        todo_.pop_front();
        return task;
    }
    OrderRecord order(std::size_t index)
    {
        std::lock_guard<std::mutex> lock(mu_);
        return orders_.at(index);
    }
    // A reference an acknowledged matching payment used, if there is one.
    std::optional<std::string> someReference(std::mt19937_64& rng)
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (references_.empty()) return std::nullopt;
        return references_[std::uniform_int_distribution<std::size_t>(0, references_.size() - 1)(rng)];
    }
    void unexpected(const std::string& what)
    {
        std::lock_guard<std::mutex> lock(mu_);
        unexpected_.push_back(what);
    }

    // After the clients stopped.
    const std::vector<OrderRecord>& orders() const { return orders_; }
    const std::vector<PaymentRecord>& payments() const { return payments_; }
    const std::vector<std::string>& unexpectedAnswers() const { return unexpected_; }

private:
    void acked()
    {
        ++acknowledged;
        if (brokerDown) ++ackedWhileBrokerDown;
    }

    std::mutex mu_;
    std::vector<OrderRecord> orders_;
    std::vector<PaymentRecord> payments_;
    std::deque<PaymentTask> todo_;
    std::vector<std::string> references_;
    std::vector<std::string> unexpected_;
};

// Sends one POST until it is answered: while the daemon is down or starting
// the connection fails, and a 503 asks to come back; each retry carries the
// same Idempotency-Key and body. nullopt if no answer came before the deadline.
std::optional<Response> sendUntilAnswered(const HttpClient& c, Ledger& ledger, const std::string& path,
                                          const std::string& body, const std::string& key)
{
    const auto deadline = Clock::now() + 120s;
    for (;;) {
        ++ledger.requests;
        try {
            Response r = c.post(path, body, {{"Idempotency-Key", key}});
            if (r.status != 503) {
                if (r.header("Idempotent-Replayed") == "true") ++ledger.replayed;
                return r;
            }
            ++ledger.unavailable;
        } catch (const std::exception&) {
            // Killed mid-request, or not listening yet: retry below.
        }
        ++ledger.retries;
        if (Clock::now() >= deadline || ledger.abort) return std::nullopt;
        std::this_thread::sleep_for(20ms); // retry interval, bounded by the deadline above
    }
}

// One client: orders, and payments for orders it or another client got acknowledged.
void client(unsigned short port, int number, std::uint64_t seed, const std::string& tag, Ledger& ledger,
            const std::atomic<bool>& stop, int burst)
{
    HttpClient c(port);
    c.setTimeout(10s);
    std::mt19937_64 rng(seed);
    static const char* const kMethods[] = {"card", "bank_transfer", "wallet", "cash"};
    // A steady ~50 requests a second per client: enough that a kill nearly
    // always cuts some request short, few enough that CI can check every
    // order afterwards.
    constexpr auto kPace = 20ms;
    auto nextRequest = Clock::now();
    for (int n = 0; !stop; ++n) {
        // A burst of orders first, as fast as they are answered; then the pace.
        if (n >= burst) {
            nextRequest = std::max(nextRequest + kPace, Clock::now() - kPace);
            std::this_thread::sleep_until(nextRequest);
        }
        const std::string key = tag + "-c" + std::to_string(number) + "-" + std::to_string(n);
        if (auto task = n >= burst ? ledger.takePaymentTask(rng) : std::nullopt) {
            const OrderRecord order = ledger.order(task->order);
            PaymentRecord p;
            p.key = key;
            p.orderId = order.id;
            p.matching = task->matching;
            p.amount = task->matching ? order.total : order.total - 1;
            std::optional<std::string> reused;
            if (task->reuseReference) reused = ledger.someReference(rng);
            p.reference = reused ? *reused : "psp-" + key;
            const std::string method = kMethods[std::uniform_int_distribution<int>(0, 3)(rng)];
            auto r = sendUntilAnswered(c, ledger, "/payment/confirm",
                                       paymentJson(p.orderId, p.amount, "EUR", method, p.reference), key);
            auto id = r ? getString(r->jsonObject(), "id") : std::nullopt; // no Catch macros off the main thread
            if (!r) {
                ledger.unexpected("payment " + key + " for " + p.orderId + ": no answer within the retry deadline");
            } else if (r->status != 202 || !id) {
                ledger.unexpected("payment " + key + " for " + p.orderId + ": " + r->describe());
            } else {
                p.id = *id;
                task->reuseReference = task->reuseReference && reused.has_value();
                ledger.addPayment(p, *task);
            }
            continue;
        }
        std::vector<Item> items;
        const int lines = std::uniform_int_distribution<int>(1, 3)(rng);
        OrderRecord o;
        o.key = key;
        for (int i = 0; i < lines; ++i) {
            Item item{"SKU-" + std::to_string(std::uniform_int_distribution<int>(1, 50)(rng)),
                      std::uniform_int_distribution<std::int64_t>(1, 5)(rng),
                      std::uniform_int_distribution<std::int64_t>(100, 5000)(rng)};
            o.total += item.quantity * item.unitAmount;
            items.push_back(item);
        }
        o.items = items.size();
        const Plan plan = pickPlan(rng);
        auto r = sendUntilAnswered(c, ledger, "/orders", orderJson(key + "@crash.example", items), key);
        auto id = r ? getString(r->jsonObject(), "id") : std::nullopt;
        if (!r) {
            ledger.unexpected("order " + key + ": no answer within the retry deadline");
        } else if (r->status != 202 || !id) {
            ledger.unexpected("order " + key + ": " + r->describe());
        } else {
            o.id = *id;
            ledger.addOrder(o, plan);
        }
    }
}

// ---------------------------------------------------------------- checks

// Violations by kind, with the first few described.
class Tally {
public:
    void add(const std::string& kind, const std::string& what, std::uint64_t n = 1)
    {
        counts_[kind] += n;
        if (examples_.size() < 30) examples_.push_back(kind + ": " + what);
    }
    std::uint64_t operator[](const std::string& kind) const
    {
        auto it = counts_.find(kind);
        return it == counts_.end() ? 0 : it->second;
    }
    std::string examples() const
    {
        std::string s;
        for (const auto& e : examples_) s += e + "\n";
        return s;
    }

private:
    std::map<std::string, std::uint64_t> counts_;
    std::vector<std::string> examples_;
};

struct Listed {
    std::string id;
    std::string customer;
    std::string status;
};

// Every order, through GET /orders pagination.
std::vector<Listed> listAllOrders(const HttpClient& c)
{
    std::vector<Listed> all;
    std::string path = "/orders?limit=200";
    for (;;) {
        Response r = c.get(path);
        INFO("GET " << path << " -> " << r.describe());
        REQUIRE(r.status == 200);
        auto page = getArray(r.obj(), "orders");
        REQUIRE(page);
        for (std::size_t i = 0; i < page->size(); ++i) {
            auto o = arrayObject(page, i);
            all.push_back({getString(o, "id").value_or(""), getString(o, "customer").value_or(""),
                           getString(o, "status").value_or("")});
        }
        if (isNull(r.obj(), "next")) return all;
        auto next = getString(r.obj(), "next");
        REQUIRE(next);
        REQUIRE(*next != path);
        path = *next;
    }
}

// GET /orders/{id} for each id, from four threads. A missing order is a null.
std::map<std::string, Poco::JSON::Object::Ptr> fetchOrders(unsigned short port, const std::vector<std::string>& ids)
{
    constexpr int kThreads = 4;
    std::vector<std::map<std::string, Poco::JSON::Object::Ptr>> parts(kThreads);
    std::vector<std::string> errors(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            HttpClient c(port);
            for (std::size_t i = t; i < ids.size(); i += kThreads) {
                try {
                    Response r = c.getOrder(ids[i]);
                    if (r.status == 200 && r.jsonObject())
                        parts[t][ids[i]] = r.jsonObject();
                    else if (r.status == 404)
                        parts[t][ids[i]] = nullptr;
                    else if (errors[t].empty())
                        errors[t] = "GET /orders/" + ids[i] + ": " + r.describe();
                } catch (const std::exception& e) {
                    if (errors[t].empty()) errors[t] = "GET /orders/" + ids[i] + ": " + e.what();
                }
            }
        });
    }
    for (auto& t : threads) t.join();
    std::map<std::string, Poco::JSON::Object::Ptr> all;
    for (int t = 0; t < kThreads; ++t) {
        INFO(errors[t]);
        REQUIRE(errors[t].empty());
        all.insert(parts[t].begin(), parts[t].end());
    }
    return all;
}

bool paymentFinal(const std::string& status)
{
    return status == "succeeded" || status == "rejected";
}

// True if every payment of every order is final.
bool allPaymentsFinal(const std::map<std::string, Poco::JSON::Object::Ptr>& orders, std::vector<std::string>* open)
{
    bool all = true;
    for (const auto& [id, o] : orders) {
        if (!o) continue;
        auto payments = getArray(o, "payments");
        for (std::size_t i = 0; payments && i < payments->size(); ++i) {
            if (!paymentFinal(getString(arrayObject(payments, i), "status").value_or(""))) {
                all = false;
                if (open) open->push_back(id);
                break;
            }
        }
    }
    return all;
}

// The history of one order: each step completed once, each status reached
// once, one event per payment outcome.
void checkHistory(const std::string& id, const Poco::JSON::Object::Ptr& order, Tally& tally)
{
    const auto ev = events(order);
    for (const char* step : {"validate", "reserve_stock", "prepare_invoice"}) {
        const int n = countEvents(ev, "step_completed", "step", step);
        if (n > 1) tally.add("double_steps", id + " completed " + step + " " + std::to_string(n) + " times", n - 1);
        if (n == 0) tally.add("wrong_outcomes", id + " never completed " + step);
    }
    std::map<std::string, int> statuses, paymentEvents;
    for (const auto& e : ev) {
        const auto type = getString(e, "type").value_or("");
        if (type == "status") ++statuses[getString(e, "status").value_or("")];
        if (type == "payment") ++paymentEvents[getString(e, "payment_id").value_or("")];
    }
    for (const auto& [status, n] : statuses)
        if (n > 1) tally.add("double_events", id + " reached " + status + " " + std::to_string(n) + " times", n - 1);
    for (const auto& [payment, n] : paymentEvents)
        if (n > 1) tally.add("double_events", id + " has " + std::to_string(n) + " outcomes for " + payment, n - 1);
    for (const char* status : {"queued", "processing", "awaiting_payment"})
        if (statuses[status] == 0) tally.add("wrong_outcomes", id + " has no " + status + " event");
    auto payments = getArray(order, "payments");
    for (std::size_t i = 0; payments && i < payments->size(); ++i) {
        const auto pid = getString(arrayObject(payments, i), "id").value_or("");
        if (paymentEvents[pid] == 0) tally.add("wrong_outcomes", id + " has no outcome event for " + pid);
    }
}

// The database as the last SIGKILL left it.
struct DatabaseCheck {
    std::string integrity;
    std::uint64_t effectsWrong = 0;
    std::string example;
};

/// The rows of (order id, count) that `sql` selects, from the SQLite file or
/// the PostgreSQL database the daemon ran on.
std::map<std::string, std::int64_t> countsByOrder(const Daemon& d, const std::string& sql)
{
    std::map<std::string, std::int64_t> got;
    if (!d.postgresqlUri().empty()) {
        for (const auto& row : postgresqlQuery(d.postgresqlUri(), "SELECT order_id || ' ' || n FROM (" + sql + ") c(order_id, n)")) {
            const auto space = row.rfind(' ');
            got[row.substr(0, space)] = std::stoll(row.substr(space + 1));
        }
        return got;
    }
    using namespace Poco::Data::Keywords;
    Poco::Data::SQLite::Connector::registerConnector();
    Poco::Data::Session s("SQLite", d.dbPath());
    std::vector<std::string> ids;
    std::vector<Poco::Int64> counts;
    s << sql, into(ids), into(counts), now;
    for (std::size_t i = 0; i < ids.size(); ++i) got[ids[i]] = counts[i];
    return got;
}

DatabaseCheck checkDatabase(const Daemon& d, const std::vector<OrderRecord>& acked)
{
    DatabaseCheck result;
    if (d.postgresqlUri().empty()) {
        using namespace Poco::Data::Keywords;
        Poco::Data::SQLite::Connector::registerConnector();
        Poco::Data::Session s("SQLite", d.dbPath());
        std::vector<std::string> rows;
        s << "PRAGMA integrity_check", into(rows), now;
        for (const auto& r : rows) result.integrity += (result.integrity.empty() ? "" : "; ") + r;
    } else {
        // The daemon was killed, not the server: PostgreSQL's own files are
        // not what this campaign tests (its unique indexes hold the ledger).
        result.integrity = "ok";
    }

    std::map<std::string, std::size_t> expectedLines;
    for (const auto& o : acked) expectedLines[o.id] = o.items;
    auto compare = [&](const std::string& what, const std::string& sql, bool perItem) {
        auto got = countsByOrder(d, sql);
        for (const auto& [id, lines] : expectedLines) {
            const std::int64_t want =
                perItem ? static_cast<std::int64_t>(lines) : (what == "step_completed events" ? 3 : 1);
            const std::int64_t have = got.count(id) ? got[id] : 0;
            if (have != want) {
                ++result.effectsWrong;
                if (result.example.empty())
                    result.example =
                        what + " of " + id + ": " + std::to_string(have) + " rows, want " + std::to_string(want);
            }
        }
        for (const auto& [id, n] : got)
            if (!expectedLines.count(id)) ++result.effectsWrong;
    };
    compare("step_completed events",
            "SELECT order_id, COUNT(*) FROM order_events WHERE type = 'step_completed' GROUP BY order_id", false);
    compare("stock_reservations", "SELECT order_id, COUNT(*) FROM stock_reservations GROUP BY order_id", true);
    compare("invoices", "SELECT order_id, COUNT(*) FROM invoices GROUP BY order_id", false);
    return result;
}

} // namespace

/// Orders in processing now, as /metrics counts them (0 if it cannot tell).
std::int64_t ordersInProcessing(const HttpClient& c)
{
    auto r = c.get("/metrics");
    if (r.status != 200) return 0;
    const std::string series = "orderpay_orders{status=\"processing\"} ";
    std::istringstream lines(r.body);
    for (std::string line; std::getline(lines, line);)
        if (line.rfind(series, 0) == 0) return std::stoll(line.substr(series.size()));
    return 0;
}

/// The processing times a campaign restarts the daemon with, in turn at random.
struct Variant {
    std::string name;
    Scale scale;
    std::vector<std::string> processingMs;
};

void runCampaign(const Variant& variant)
{
    const auto started = Clock::now();
    const bool rabbit = usingRabbitMq();
    const Scale scale = variant.scale;
    const std::uint64_t seed = std::random_device{}();
    std::mt19937_64 rng(seed);
    INFO("seed " << seed);

    std::optional<CampaignRabbitMq> broker;
    std::vector<std::string> defines{"orders.workers=3", "payments.workers=2",
                                     "orders.processing_ms=" + variant.processingMs.front(), "retry.max_attempts=10",
                                     "retry.backoff_ms=100"};
    if (rabbit) {
        broker.emplace();
        for (const auto& d : broker->defines()) defines.push_back(d);
    }
    Daemon d(defines, Daemon::Wait::No);
    d.waitReady(60s);
    HttpClient admin(d.port());
    if (rabbit) REQUIRE(eventually([&] { return brokerHealth(admin) == "ok"; }, 60s, 100ms));

    Ledger ledger;
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    const std::string tag = "crash-" + std::to_string(seed % 1000000007);
    for (int t = 0; t < 4; ++t)
        clients.emplace_back(client, d.port(), t, seed + 1 + t, tag, std::ref(ledger), std::cref(stop), scale.burst);
    // Whatever fails below, the clients must be stopped before the ledger goes.
    struct Joiner {
        Ledger& ledger;
        std::atomic<bool>& stop;
        std::vector<std::thread>& threads;
        ~Joiner()
        {
            ledger.abort = std::uncaught_exceptions() > 0;
            stop = true;
            for (auto& t : threads)
                if (t.joinable()) t.join();
        }
    } joiner{ledger, stop, clients};

    std::int64_t mostInFlight = 0;
    int daemonKills = 0, brokerKills = 0, brokerKillsAlone = 0;
    int nextBrokerKill = scale.firstBrokerKill;
    // With RabbitMQ, past the planned iterations until both kinds of broker
    // kill happened (a broker restarting in the background skips a turn),
    // within three times as many.
    auto brokerKillsDone = [&] { return !rabbit || (brokerKills >= 2 && brokerKillsAlone >= 1); };
    const int last = scale.iterations * 3;
    int iterations = 0;
    for (int i = 1; i <= scale.iterations || (!brokerKillsDone() && i <= last); ++i) {
        iterations = i;
        const auto window = Millis(std::uniform_int_distribution<int>(200, 1500)(rng));
        const auto acknowledgedBefore = ledger.acknowledged.load();
        // The traffic window is the point, not a wait for something: kill at a random moment.
        std::this_thread::sleep_until(Clock::now() + window);
        {
            INFO("iteration " << i << ": nothing acknowledged for 60 s");
            REQUIRE(eventually([&] { return ledger.acknowledged > acknowledgedBefore; }, 60s, 5ms));
        }
        if (rabbit && i >= nextBrokerKill && !broker->restarting()) {
            nextBrokerKill = i + scale.brokerKillEvery;
            ++brokerKills;
            ledger.brokerDown = true;
            broker->kill();
            // Every second kill, the daemon lives on (the first one does not:
            // its restart then overlaps with the iterations that follow).
            if (brokerKills % 2 == 0) {
                // The daemon lives through the outage: writes go on (outbox),
                // and once the broker is back it reconnects by itself.
                ++brokerKillsAlone;
                broker->restart();
                ledger.brokerDown = false;
                INFO("iteration " << i << ": the daemon did not reconnect to the restarted broker");
                REQUIRE(eventually([&] { return brokerHealth(admin) == "ok"; }, 90s, 100ms));
            } else {
                // Broker and daemon die together; the daemon comes back
                // first, and is killed again while the broker boots.
                broker->restartInBackground();
            }
        }
        if (rabbit && ledger.brokerDown && !broker->restarting() && broker->up()) ledger.brokerDown = false;
        mostInFlight = std::max(mostInFlight, ordersInProcessing(admin));
        d.kill();
        ++daemonKills;
        const auto& choices = variant.processingMs;
        const std::string processingMs =
            i >= scale.iterations
                ? choices.front()
                : choices[std::uniform_int_distribution<std::size_t>(0, choices.size() - 1)(rng)];
        d.restart({"orders.processing_ms=" + processingMs}, Daemon::Wait::No);
        d.waitReady(60s);
        if (i % 50 == 0) {
            std::cerr << "crash campaign (" << (rabbit ? "rabbitmq" : "embedded") << "): " << i << "/"
                      << scale.iterations << " iterations, " << ledger.acknowledged << " acknowledged, "
                      << static_cast<int>(secondsSince(started)) << " s\n";
        }
    }

    const auto trafficEnded = Clock::now();
    const double trafficSeconds = std::chrono::duration<double>(trafficEnded - started).count();
    // The clients finish what they started (each request until answered).
    stop = true;
    for (auto& t : clients) t.join();
    if (rabbit) {
        broker->finishRestart();
        ledger.brokerDown = false;
        INFO("the daemon did not connect to the restarted broker");
        REQUIRE(eventually([&] { return brokerHealth(admin) == "ok"; }, 90s, 100ms));
    }

    // Let processing finish: no order queued or in processing, every payment
    // final. An order that never gets there is counted below (wrong_outcomes),
    // after the RESULT line has the figures.
    std::string drainState;
    bool drained = false;
    {
        std::string& state = drainState;
        drained = eventually(
            [&] {
                for (const char* status : {"queued", "processing"}) {
                    auto r = admin.get(std::string("/orders?limit=1&status=") + status);
                    auto page = r.status == 200 ? getArray(r.jsonObject(), "orders") : nullptr;
                    if (!page || page->size() != 0) {
                        state = std::string("still ") + status + ": " + r.describe();
                        return false;
                    }
                }
                return true;
            },
            180s, 200ms);
    }
    const double drainSeconds = secondsSince(trafficEnded);
    const auto verifyStarted = Clock::now();
    const auto listed = listAllOrders(admin);
    std::vector<std::string> listedIds;
    for (const auto& l : listed) listedIds.push_back(l.id);
    auto fetched = fetchOrders(d.port(), listedIds);
    {
        std::vector<std::string> open;
        const auto deadline = Clock::now() + 120s;
        while (!allPaymentsFinal(fetched, &open) && Clock::now() < deadline) {
            auto again = fetchOrders(d.port(), open); // poll the unfinished ones, bounded by the deadline
            for (auto& [id, o] : again) fetched[id] = o;
            open.clear();
            std::this_thread::sleep_for(200ms); // poll interval until the deadline above
        }
    }

    Tally tally;
    const auto& ackedOrders = ledger.orders();
    const auto& ackedPayments = ledger.payments();

    // Orders: each acknowledged one exists, none exists twice (one per key).
    std::map<std::string, int> perCustomer;
    for (const auto& l : listed) ++perCustomer[l.customer];
    for (const auto& [customer, n] : perCustomer)
        if (n > 1) tally.add("duplicates", std::to_string(n) + " orders for " + customer, n - 1);
    std::set<std::string> ackedOrderIds;
    for (const auto& o : ackedOrders) {
        ackedOrderIds.insert(o.id);
        auto it = fetched.find(o.id);
        if (it == fetched.end() || !it->second) {
            tally.add("lost", "order " + o.id + " (" + o.key + ")");
            continue;
        }
        if (getString(it->second, "customer").value_or("") != o.key + "@crash.example")
            tally.add("wrong_outcomes", "order " + o.id + " is not " + o.key + "'s");
        if (getInt(it->second, "total_amount").value_or(-1) != o.total)
            tally.add("wrong_outcomes", "order " + o.id + " has the wrong total");
    }
    for (const auto& l : listed)
        if (!ackedOrderIds.count(l.id) && perCustomer[l.customer] == 1)
            tally.add("duplicates", "order " + l.id + " was never acknowledged, yet stored");

    // Payments: each acknowledged one exists on its order, once.
    struct Seen {
        std::string orderId, status, reason, reference;
        std::int64_t amount = 0;
    };
    std::map<std::string, Seen> seen; // every payment of every order
    for (const auto& [id, o] : fetched) {
        if (!o) continue;
        auto payments = getArray(o, "payments");
        for (std::size_t i = 0; payments && i < payments->size(); ++i) {
            auto p = arrayObject(payments, i);
            seen[getString(p, "id").value_or("")] = {
                id, getString(p, "status").value_or(""), getString(p, "reason").value_or(""),
                getString(p, "reference").value_or(""), getInt(p, "amount").value_or(-1)};
        }
    }
    std::map<std::string, const PaymentRecord*> ackedById;
    for (const auto& p : ackedPayments) {
        ackedById[p.id] = &p;
        auto it = seen.find(p.id);
        if (it == seen.end() || it->second.orderId != p.orderId)
            tally.add("lost", "payment " + p.id + " (" + p.key + ") for " + p.orderId);
    }
    std::map<std::pair<std::string, std::string>, int> perOrderReference;
    std::map<std::string, std::vector<std::string>> byReference; // reference -> payment ids
    for (const auto& [pid, s] : seen) {
        // A payment stored but never acknowledged can only come from a
        // retried request that was not recognised as one.
        if (!ackedById.count(pid))
            tally.add("duplicates", "payment " + pid + " on " + s.orderId + " was never acknowledged");
        else if (++perOrderReference[{s.orderId, s.reference}] > 1)
            tally.add("duplicates", "a second payment " + pid + " with reference " + s.reference + " on " + s.orderId);
        byReference[s.reference].push_back(pid);
        if (!paymentFinal(s.status)) tally.add("wrong_outcomes", "payment " + pid + " still " + s.status);
    }

    // Outcomes: no reference and no order charged twice; each payment as its amount says.
    std::uint64_t succeeded = 0, rejected = 0;
    for (const auto& [reference, pids] : byReference) {
        int wins = 0;
        for (const auto& pid : pids) wins += seen[pid].status == "succeeded";
        if (wins > 1)
            tally.add("double_charges", "reference " + reference + " succeeded " + std::to_string(wins) + " times",
                      wins - 1);
        for (const auto& pid : pids) {
            const Seen& s = seen[pid];
            auto acked = ackedById.find(pid);
            if (acked == ackedById.end()) continue;
            succeeded += s.status == "succeeded";
            rejected += s.status == "rejected";
            const std::string what = "payment " + pid + " (" + acked->second->key + ") " + s.status + " " + s.reason;
            if (!acked->second->matching) {
                // One cent short: amount_mismatch, or order_not_payable if its order got paid first.
                const bool orderPaid = fetched[s.orderId] && getString(fetched[s.orderId], "status") == "paid";
                if (s.status != "rejected" ||
                    !(s.reason == "amount_mismatch" || (orderPaid && s.reason == "order_not_payable")))
                    tally.add("wrong_outcomes", what + ", want rejected amount_mismatch");
            } else if (pids.size() == 1) {
                if (s.status != "succeeded") tally.add("wrong_outcomes", what + ", want succeeded");
            } else {
                // Several payments with one reference: exactly one succeeds.
                if (wins == 0)
                    tally.add("wrong_outcomes", what + ": no payment with reference " + reference + " succeeded");
                if (s.status != "succeeded" && !(s.status == "rejected" && s.reason == "duplicate_reference"))
                    tally.add("wrong_outcomes", what + ", want succeeded or rejected duplicate_reference");
            }
        }
    }
    std::uint64_t paid = 0, awaiting = 0;
    for (const auto& [id, o] : fetched) {
        if (!o) continue;
        checkHistory(id, o, tally);
        const auto status = getString(o, "status").value_or("");
        int wins = 0;
        auto payments = getArray(o, "payments");
        for (std::size_t i = 0; payments && i < payments->size(); ++i)
            wins += getString(arrayObject(payments, i), "status") == "succeeded";
        if (wins > 1)
            tally.add("double_charges", "order " + id + " has " + std::to_string(wins) + " succeeded payments",
                      wins - 1);
        const std::string want = wins >= 1 ? "paid" : "awaiting_payment";
        if (status != want)
            tally.add("wrong_outcomes", "order " + id + " is " + status + ", want " + want +
                                            " (reason: " + getString(o, "reason").value_or("") + ")");
        paid += status == "paid";
        awaiting += status == "awaiting_payment";
    }

    // A last crash, then the database file itself.
    d.kill();
    ++daemonKills;
    const auto db = checkDatabase(d, ackedOrders);

    const auto& unexpected = ledger.unexpectedAnswers();
    std::ostringstream result;
    result << "RESULT campaign=" << variant.name << " broker=" << (rabbit ? "rabbitmq" : "embedded")
           << " store=" << (d.postgresqlUri().empty() ? "sqlite" : "postgresql")
           << " iterations=" << iterations << " requests=" << ledger.requests << " retries=" << ledger.retries
           << " replayed=" << ledger.replayed << " unavailable=" << ledger.unavailable
           << " acknowledged_orders=" << ackedOrders.size() << " acknowledged_payments=" << ackedPayments.size()
           << " paid=" << paid << " awaiting_payment=" << awaiting << " payments_succeeded=" << succeeded
           << " payments_rejected=" << rejected << " most_in_flight_at_a_kill=" << mostInFlight
           << " daemon_kills=" << daemonKills << " broker_kills=" << brokerKills;
    if (rabbit) result << " acked_while_broker_down=" << ledger.ackedWhileBrokerDown;
    result << " lost=" << tally["lost"] << " duplicates=" << tally["duplicates"]
           << " double_steps=" << tally["double_steps"] << " double_events=" << tally["double_events"]
           << " double_charges=" << tally["double_charges"] << " wrong_outcomes=" << tally["wrong_outcomes"]
           << " unexpected_answers=" << unexpected.size() << " effects_wrong=" << db.effectsWrong
           << " integrity=" << (db.integrity == "ok" ? "ok" : "FAILED")
           << " seconds=" << static_cast<int>(secondsSince(started) + 0.5)
           << " traffic_seconds=" << static_cast<int>(trafficSeconds + 0.5)
           << " drain_seconds=" << static_cast<int>(drainSeconds + 0.5)
           << " verify_seconds=" << static_cast<int>(secondsSince(verifyStarted) + 0.5) << " seed=" << seed;
    std::cout << result.str() << std::endl;

    INFO(result.str());
    INFO("violations (first 30):\n" << tally.examples());
    {
        std::string first;
        for (std::size_t i = 0; i < std::min<std::size_t>(unexpected.size(), 10); ++i) first += unexpected[i] + "\n";
        INFO("unexpected answers (first 10):\n" << first);
        CHECK(unexpected.empty());
    }
    {
        INFO("processing did not finish: " << drainState);
        CHECK(drained);
    }
    CHECK(tally["lost"] == 0);
    CHECK(tally["duplicates"] == 0);
    CHECK(tally["double_steps"] == 0);
    CHECK(tally["double_events"] == 0);
    CHECK(tally["double_charges"] == 0);
    CHECK(tally["wrong_outcomes"] == 0);
    {
        INFO("PRAGMA integrity_check: " << db.integrity);
        CHECK(db.integrity == "ok");
    }
    {
        INFO("step effects: " << db.example);
        CHECK(db.effectsWrong == 0);
    }
    // The campaign really exercised what it claims to.
    CHECK(ackedOrders.size() >= static_cast<std::size_t>(scale.iterations));
    // Most of a burst is still waiting in its timers when a kill lands.
    if (scale.burst > 0) CHECK(mostInFlight >= scale.burst);
    CHECK(paid > 0);
    CHECK(rejected > 0);
    if (rabbit) {
        CHECK(brokerKills >= 2);
        CHECK(brokerKillsAlone >= 1);
        CHECK(ledger.ackedWhileBrokerDown > 0);
    }
}

TEST_CASE("Crash campaign: SIGKILL under load, every acknowledged order and payment completes exactly once",
          "[reliability][crash]")
{
    // Processing in one transaction (0) or step by step, each step a commit
    // of its own after its timer, and a moment to be killed in.
    runCampaign({"crash", campaignScale(), {"0", "0", "6", "30"}});
}

TEST_CASE("Crash campaign at the shipped 6 s per order: SIGKILL with thousands of orders waiting in their timers",
          "[reliability][crash]")
{
    runCampaign({"crash-paced", pacedScale(), {"6000"}});
}
