#include "http/HealthHandler.h"

#include "http/Json.h"
#include "store/Database.h"
#include "metrics/Metrics.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <sstream>

namespace orderpay::http {

HealthHandler::HealthHandler(Service& service, std::string route, bool ready)
    : ApiHandler(service, std::move(route), false), ready_(ready)
{
}

bool HealthHandler::databaseWritable()
{
    // The last probe's outcome (the database took the migrations' writes
    // at start-up); once that is over a second old the next probe is
    // started, without waiting for it: an HTTP thread never waits for a commit.
    static std::atomic<bool> writable{true};
    static std::atomic<bool> probing{false};
    static std::atomic<std::int64_t> probedAt{0};
    const std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch()).count();
    if (now - probedAt.load() >= 1000 && !probing.exchange(true)) {
        probedAt = now;
        service_.store.probeWritable([](bool ok) {
            writable = ok;
            probing = false;
        });
    }
    return writable;
}

void HealthHandler::handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse& response)
{
    Poco::JSON::Object::Ptr body = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
    if (!ready_) {
        body->set("status", "ok");
        return sendJson(response, 200, toText(body));
    }
    const bool database = databaseWritable();
    const bool broker = service_.broker.connected();
    body->set("status", database && broker ? "ok" : "unavailable");
    Poco::JSON::Object::Ptr components = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
    components->set("database", database ? "ok" : "unavailable");
    components->set("broker", broker ? "ok" : "disconnected");
    body->set("components", components);
    if (!(database && broker)) response.set("Retry-After", "5");
    sendJson(response, database && broker ? 200 : 503, toText(body));
}

MetricsHandler::MetricsHandler(Service& service) : ApiHandler(service, "/metrics", false) {}

void MetricsHandler::handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse& response)
{
    std::ostringstream out;
    out << Metrics::instance().renderCounters();

    out << "# HELP orderpay_queue_depth Messages in each queue, by state.\n# TYPE orderpay_queue_depth gauge\n";
    const auto depths = service_.broker.depths();
    for (const auto& [queue, d] : depths) {
        out << "orderpay_queue_depth{queue=\"" << queue << "\",state=\"ready\"} " << d.ready << "\n"
            << "orderpay_queue_depth{queue=\"" << queue << "\",state=\"in_flight\"} " << d.inFlight << "\n"
            << "orderpay_queue_depth{queue=\"" << queue << "\",state=\"dead\"} " << d.dead << "\n";
    }
    out << "# HELP orderpay_queue_oldest_age_seconds Age of the oldest message not yet done.\n"
        << "# TYPE orderpay_queue_oldest_age_seconds gauge\n";
    for (const auto& [queue, d] : depths) {
        out << "orderpay_queue_oldest_age_seconds{queue=\"" << queue << "\"} "
            << static_cast<double>(d.oldestAgeMs) / 1000.0 << "\n";
    }
    out << "# HELP orderpay_orders Orders by status.\n# TYPE orderpay_orders gauge\n";
    for (const auto& [status, n] : service_.store.orderCounts()) {
        out << "orderpay_orders{status=\"" << status << "\"} " << n << "\n";
    }
    out << "# HELP orderpay_payments Payments by status.\n# TYPE orderpay_payments gauge\n";
    for (const auto& [status, n] : service_.store.paymentCounts()) {
        out << "orderpay_payments{status=\"" << status << "\"} " << n << "\n";
    }
    const auto commits = service_.committer.stats();
    out << "# HELP orderpay_store_transactions_total Write transactions committed (each one sync).\n"
        << "# TYPE orderpay_store_transactions_total counter\n"
        << "orderpay_store_transactions_total " << commits.transactions << "\n"
        << "# HELP orderpay_store_writes_total Units of work committed; over transactions, the mean group-commit batch.\n"
        << "# TYPE orderpay_store_writes_total counter\n"
        << "orderpay_store_writes_total " << commits.units << "\n"
        << "# HELP orderpay_store_batch_size Units of work per committed transaction (group commit).\n"
        << "# TYPE orderpay_store_batch_size histogram\n";
    for (std::size_t i = 0; i < Committer::kBatchBounds.size(); ++i) {
        out << "orderpay_store_batch_size_bucket{le=\"" << Committer::kBatchBounds[i] << "\"} " << commits.batchesUpTo[i]
            << "\n";
    }
    out << "orderpay_store_batch_size_bucket{le=\"+Inf\"} " << commits.transactions << "\n"
        << "orderpay_store_batch_size_sum " << commits.units << "\n"
        << "orderpay_store_batch_size_count " << commits.transactions << "\n"
        << "# HELP orderpay_store_failed_commits_total Transactions the database refused.\n"
        << "# TYPE orderpay_store_failed_commits_total counter\n"
        << "orderpay_store_failed_commits_total " << commits.failedCommits << "\n"
        << "# HELP orderpay_sqlite_memory_bytes Heap SQLite holds now (page caches, schemas, statements).\n"
        << "# TYPE orderpay_sqlite_memory_bytes gauge\n"
        << "orderpay_sqlite_memory_bytes " << Database::memoryUsed() << "\n"
        << "# HELP orderpay_sqlite_memory_highwater_bytes The most heap SQLite has held since start.\n"
        << "# TYPE orderpay_sqlite_memory_highwater_bytes gauge\n"
        << "orderpay_sqlite_memory_highwater_bytes " << Database::memoryHighwater() << "\n"
        << "# HELP orderpay_sqlite_memory_limit_bytes What SQLite keeps its page caches under, all connections together.\n"
        << "# TYPE orderpay_sqlite_memory_limit_bytes gauge\n"
        << "orderpay_sqlite_memory_limit_bytes " << Database::memoryLimit() << "\n"
        << "# HELP orderpay_broker_connected 1 while the broker is connected.\n"
        << "# TYPE orderpay_broker_connected gauge\n"
        << "orderpay_broker_connected " << (service_.broker.connected() ? 1 : 0) << "\n";

    const std::string text = out.str();
    response.setStatusAndReason(Poco::Net::HTTPResponse::HTTP_OK);
    response.setContentType("text/plain; version=0.0.4; charset=utf-8");
    response.setContentLength(static_cast<std::streamsize>(text.size()));
    response.send() << text;
}

}  // namespace orderpay::http
