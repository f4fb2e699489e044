// What the reliability campaigns share: the clients' traffic (orders and
// payments, each POST retried with its Idempotency-Key until answered) with
// the ledger of what they got acknowledged, and the verdict afterwards
// (everything acknowledged exists once, completed once, charged at most
// once, with each step's effect stored once).
//
// Used by the crash campaign (one daemon killed over and over) and by the
// cluster scenarios (several daemons on hosts of their own, a machine lost).
#pragma once

#include "HttpClient.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace e2e::campaign {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start);

// What a client does with an order once it is acknowledged.
enum class Plan {
    Pay,             // the right amount: succeeded, order paid
    Underpay,        // one cent short: rejected (amount_mismatch)
    UnderpayThenPay, // both, the second sent once the first is acknowledged
    ReuseReference,  // the right amount with another order's reference: one of the two is rejected
    NoPayment,       // stays awaiting_payment
};

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
    // While `faulty` is set (a broker down, a machine lost), acknowledgements
    // are also counted in ackedDuringFault.
    std::atomic<std::uint64_t> ackedDuringFault{0};
    std::atomic<bool> faulty{false};
    std::atomic<bool> abort{false}; // the test failed: stop retrying

    void addOrder(const OrderRecord& order, Plan plan);
    void addPayment(const PaymentRecord& payment, const PaymentTask& task);
    // The oldest payment still to send, with probability 1/2.
    std::optional<PaymentTask> takePaymentTask(std::mt19937_64& rng);
    OrderRecord order(std::size_t index);
    // A reference an acknowledged matching payment used, if there is one.
    std::optional<std::string> someReference(std::mt19937_64& rng);
    void unexpected(const std::string& what);

    // After the clients stopped.
    const std::vector<OrderRecord>& orders() const { return orders_; }
    const std::vector<PaymentRecord>& payments() const { return payments_; }
    const std::vector<std::string>& unexpectedAnswers() const { return unexpected_; }

private:
    void acked();

    std::mutex mu_;
    std::vector<OrderRecord> orders_;
    std::vector<PaymentRecord> payments_;
    std::deque<PaymentTask> todo_;
    std::vector<std::string> references_;
    std::vector<std::string> unexpected_;
};

// One client: orders, and payments for orders it or another client got
// acknowledged, about 50 requests a second after a first `burst` of orders.
// Each request goes to one of `targets` (the instances of one service);
// one that does not answer, or answers 503, is left for the next, as a load
// balancer does, with the same Idempotency-Key and body. A request not
// answered within `requestTimeout` counts as not answered.
void client(std::vector<HttpClient> targets, int number, std::uint64_t seed, const std::string& tag, Ledger& ledger,
            const std::atomic<bool>& stop, int burst,
            std::chrono::milliseconds requestTimeout = std::chrono::seconds(10));

// Violations by kind, with the first few described.
class Tally {
public:
    void add(const std::string& kind, const std::string& what, std::uint64_t n = 1);
    std::uint64_t operator[](const std::string& kind) const;
    std::string examples() const;

private:
    std::map<std::string, std::uint64_t> counts_;
    std::vector<std::string> examples_;
};

// What the service holds once the traffic stopped and processing finished.
struct Verdict {
    Tally tally;  // lost, duplicates, double_steps, double_events, double_charges, wrong_outcomes
    std::uint64_t paid = 0, awaiting = 0, succeeded = 0, rejected = 0;
    bool drained = false;    // no order left queued or in processing
    std::string drainState;  // what was left, if not
    double drainSeconds = 0, verifySeconds = 0;
};

// Waits (up to `drainTimeout`) until no order is queued or in processing,
// then reads every order through `api` and checks it against the ledger.
Verdict verify(const HttpClient& api, const Ledger& ledger, std::chrono::seconds drainTimeout = std::chrono::seconds(180));

// " lost=.. duplicates=.. double_steps=.. double_events=.. double_charges=.. wrong_outcomes=.. unexpected_answers=.."
std::string violationsLine(const Verdict& v, const Ledger& ledger);
// CHECKs every count of the verdict to be 0, the drain to have finished and
// no answer to have been unexpected (with the first examples as INFO).
void checkClean(const Verdict& v, const Ledger& ledger);

// The rows of (order id, count) a query of the daemons' database selects.
using CountsByOrder = std::function<std::map<std::string, std::int64_t>(const std::string& sql)>;
struct EffectsCheck {
    std::uint64_t wrong = 0;
    std::string example;
};
// Each acknowledged order's step effects are stored exactly once: three
// step_completed events, one stock reservation per line, one invoice.
EffectsCheck checkEffects(const CountsByOrder& counts, const std::vector<OrderRecord>& acked);
// `counts` for a PostgreSQL database.
CountsByOrder postgresqlCounts(const std::string& uri);

}  // namespace e2e::campaign
