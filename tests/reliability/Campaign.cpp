#include "Campaign.h"

#include "Daemon.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <thread>

namespace e2e::campaign {

using namespace std::chrono_literals;

double secondsSince(Clock::time_point start)
{
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// ---------------------------------------------------------------- traffic

namespace {

Plan pickPlan(std::mt19937_64& rng)
{
    const int r = std::uniform_int_distribution<int>(0, 99)(rng);
    if (r < 55) return Plan::Pay;
    if (r < 70) return Plan::Underpay;
    if (r < 82) return Plan::UnderpayThenPay;
    if (r < 90) return Plan::ReuseReference;
    return Plan::NoPayment;
}

/// The instances a client sends to, the one it uses now first.
struct Targets {
    std::vector<HttpClient>& all;
    std::size_t at = 0;
    const HttpClient& now() const { return all[at]; }
    void next() { at = (at + 1) % all.size(); }
};

// Sends one POST until it is answered: while the daemon is down or starting
// the connection fails, and a 503 asks to come back; each retry goes to the
// next target and carries the same Idempotency-Key and body. nullopt if no answer came before the deadline.
std::optional<Response> sendUntilAnswered(Targets& c, Ledger& ledger, const std::string& path,
                                          const std::string& body, const std::string& key)
{
    const auto deadline = Clock::now() + 120s;
    for (;;) {
        ++ledger.requests;
        try {
            Response r = c.now().post(path, body, {{"Idempotency-Key", key}});
            if (r.status != 503) {
                if (r.header("Idempotent-Replayed") == "true") ++ledger.replayed;
                return r;
            }
            ++ledger.unavailable;
        } catch (const std::exception&) {
            // Killed mid-request, or not listening yet: retry below.
        }
        ++ledger.retries;
        c.next();
        if (Clock::now() >= deadline || ledger.abort) return std::nullopt;
        std::this_thread::sleep_for(20ms); // retry interval, bounded by the deadline above
    }
}

}  // namespace

void Ledger::addOrder(const OrderRecord& order, Plan plan)
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

void Ledger::addPayment(const PaymentRecord& payment, const PaymentTask& task)
{
    std::lock_guard<std::mutex> lock(mu_);
    payments_.push_back(payment);
    if (task.thenPay) todo_.push_back({task.order, true, false, false});
    if (payment.matching && !task.reuseReference) references_.push_back(payment.reference);
    acked();
}

std::optional<PaymentTask> Ledger::takePaymentTask(std::mt19937_64& rng)
{
    std::lock_guard<std::mutex> lock(mu_);
    if (todo_.empty() || std::uniform_int_distribution<int>(0, 1)(rng) == 0) return std::nullopt;
    PaymentTask task = todo_.front();
    todo_.pop_front();
    return task;
}

OrderRecord Ledger::order(std::size_t index)
{
    std::lock_guard<std::mutex> lock(mu_);
    return orders_.at(index);
}

std::optional<std::string> Ledger::someReference(std::mt19937_64& rng)
{
    std::lock_guard<std::mutex> lock(mu_);
    if (references_.empty()) return std::nullopt;
    return references_[std::uniform_int_distribution<std::size_t>(0, references_.size() - 1)(rng)];
}

void Ledger::unexpected(const std::string& what)
{
    std::lock_guard<std::mutex> lock(mu_);
    unexpected_.push_back(what);
}

void Ledger::acked()
{
    ++acknowledged;
    if (faulty) ++ackedDuringFault;
}

void client(std::vector<HttpClient> targets, int number, std::uint64_t seed, const std::string& tag, Ledger& ledger,
            const std::atomic<bool>& stop, int burst, std::chrono::milliseconds requestTimeout)
{
    for (auto& t : targets) t.setTimeout(requestTimeout);
    Targets c{targets, static_cast<std::size_t>(number) % targets.size()};
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

void Tally::add(const std::string& kind, const std::string& what, std::uint64_t n)
{
    counts_[kind] += n;
    if (examples_.size() < 30) examples_.push_back(kind + ": " + what);
}

std::uint64_t Tally::operator[](const std::string& kind) const
{
    auto it = counts_.find(kind);
    return it == counts_.end() ? 0 : it->second;
}

std::string Tally::examples() const
{
    std::string s;
    for (const auto& e : examples_) s += e + "\n";
    return s;
}

namespace {

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
std::map<std::string, Poco::JSON::Object::Ptr> fetchOrders(const HttpClient& api, const std::vector<std::string>& ids)
{
    constexpr int kThreads = 4;
    std::vector<std::map<std::string, Poco::JSON::Object::Ptr>> parts(kThreads);
    std::vector<std::string> errors(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            HttpClient c(api.host(), api.port());
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

}  // namespace

Verdict verify(const HttpClient& api, const Ledger& ledger, std::chrono::seconds drainTimeout)
{
    Verdict verdict;
    Tally& tally = verdict.tally;
    const auto trafficEnded = Clock::now();
    // Let processing finish: no order queued or in processing, every payment
    // final. An order that never gets there is counted below (wrong_outcomes),
    // after the RESULT line has the figures.
    {
        std::string& state = verdict.drainState;
        verdict.drained = eventually(
            [&] {
                for (const char* status : {"queued", "processing"}) {
                    auto r = api.get(std::string("/orders?limit=1&status=") + status);
                    auto page = r.status == 200 ? getArray(r.jsonObject(), "orders") : nullptr;
                    if (!page || page->size() != 0) {
                        state = std::string("still ") + status + ": " + r.describe();
                        return false;
                    }
                }
                return true;
            },
            drainTimeout, 200ms);
    }
    verdict.drainSeconds = secondsSince(trafficEnded);
    const auto verifyStarted = Clock::now();
    const auto listed = listAllOrders(api);
    std::vector<std::string> listedIds;
    for (const auto& l : listed) listedIds.push_back(l.id);
    auto fetched = fetchOrders(api, listedIds);
    {
        std::vector<std::string> open;
        const auto deadline = Clock::now() + 120s;
        while (!allPaymentsFinal(fetched, &open) && Clock::now() < deadline) {
            auto again = fetchOrders(api, open); // poll the unfinished ones, bounded by the deadline
            for (auto& [id, o] : again) fetched[id] = o;
            open.clear();
            std::this_thread::sleep_for(200ms); // poll interval until the deadline above
        }
    }

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
    std::uint64_t& succeeded = verdict.succeeded;
    std::uint64_t& rejected = verdict.rejected;
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
    std::uint64_t& paid = verdict.paid;
    std::uint64_t& awaiting = verdict.awaiting;
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
    verdict.verifySeconds = secondsSince(verifyStarted);
    return verdict;
}

std::string violationsLine(const Verdict& v, const Ledger& ledger)
{
    const Tally& t = v.tally;
    return " lost=" + std::to_string(t["lost"]) + " duplicates=" + std::to_string(t["duplicates"]) +
           " double_steps=" + std::to_string(t["double_steps"]) + " double_events=" + std::to_string(t["double_events"]) +
           " double_charges=" + std::to_string(t["double_charges"]) +
           " wrong_outcomes=" + std::to_string(t["wrong_outcomes"]) +
           " unexpected_answers=" + std::to_string(ledger.unexpectedAnswers().size());
}

void checkClean(const Verdict& v, const Ledger& ledger)
{
    const auto& unexpected = ledger.unexpectedAnswers();
    INFO("violations (first 30):\n" << v.tally.examples());
    {
        std::string first;
        for (std::size_t i = 0; i < std::min<std::size_t>(unexpected.size(), 10); ++i) first += unexpected[i] + "\n";
        INFO("unexpected answers (first 10):\n" << first);
        CHECK(unexpected.empty());
    }
    {
        INFO("processing did not finish: " << v.drainState);
        CHECK(v.drained);
    }
    for (const char* kind : {"lost", "duplicates", "double_steps", "double_events", "double_charges", "wrong_outcomes"}) {
        INFO(kind);
        CHECK(v.tally[kind] == 0);
    }
}

EffectsCheck checkEffects(const CountsByOrder& counts, const std::vector<OrderRecord>& acked)
{
    EffectsCheck result;
    std::map<std::string, std::size_t> expectedLines;
    for (const auto& o : acked) expectedLines[o.id] = o.items;
    auto compare = [&](const std::string& what, const std::string& sql, bool perItem) {
        auto got = counts(sql);
        for (const auto& [id, lines] : expectedLines) {
            const std::int64_t want =
                perItem ? static_cast<std::int64_t>(lines) : (what == "step_completed events" ? 3 : 1);
            const std::int64_t have = got.count(id) ? got[id] : 0;
            if (have != want) {
                ++result.wrong;
                if (result.example.empty())
                    result.example =
                        what + " of " + id + ": " + std::to_string(have) + " rows, want " + std::to_string(want);
            }
        }
        for (const auto& [id, n] : got)
            if (!expectedLines.count(id)) ++result.wrong;
    };
    compare("step_completed events",
            "SELECT order_id, COUNT(*) FROM order_events WHERE type = 'step_completed' GROUP BY order_id", false);
    compare("stock_reservations", "SELECT order_id, COUNT(*) FROM stock_reservations GROUP BY order_id", true);
    compare("invoices", "SELECT order_id, COUNT(*) FROM invoices GROUP BY order_id", false);
    return result;
}

CountsByOrder postgresqlCounts(const std::string& uri)
{
    return [uri](const std::string& sql) {
        std::map<std::string, std::int64_t> got;
        for (const auto& row : postgresqlQuery(uri, "SELECT order_id || ' ' || n FROM (" + sql + ") c(order_id, n)")) {
            const auto space = row.rfind(' ');
            got[row.substr(0, space)] = std::stoll(row.substr(space + 1));
        }
        return got;
    };
}

}  // namespace e2e::campaign
