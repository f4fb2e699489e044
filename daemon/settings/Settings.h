#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace orderpay {

/// Every setting orderpayd has, typed and validated. Only Config reads
/// configuration keys; everything else receives these structs.
struct HttpSettings {
    std::string host = "127.0.0.1";
    std::uint16_t port = 1212;
    int maxThreads = 4;
    int maxQueued = 256;
    std::size_t maxBodyBytes = 64 * 1024;
    std::string authTokenFile;  // empty: auth off
    std::string adminTokenFile;  // empty: the operator routes take the API's tokens
    bool allowUnauthenticated = false;
    std::chrono::milliseconds idempotencyTtl = std::chrono::hours(24);
    std::chrono::milliseconds readTimeout = std::chrono::seconds(10);
};

struct BrokerSettings {
    std::string kind = "embedded";  // embedded | rabbitmq
    /// How long a message leased by an instance (the embedded queue), or
    /// an outbox row claimed for relaying, stays its: past it, another
    /// instance takes it over (one that died, froze or was cut off).
    std::chrono::milliseconds lease = std::chrono::seconds(15);
    std::string rabbitmqUri = "amqp://guest:guest@127.0.0.1:5672/";
    int rabbitmqPrefetch = 10;
    std::string rabbitmqQueueType = "classic";  // classic | quorum
    std::string rabbitmqPrefix = "orderpay.";    // of every exchange and queue name
    std::string rabbitmqCaFile;                  // amqps: CA bundle; empty = the system's
};

struct StoreSettings {
    std::string kind = "sqlite";  // sqlite | postgresql
    std::string sqlitePath = "/var/lib/orderpay/orderpay.db";
    std::string sqliteSynchronous = "full";  // full | normal
    std::string postgresqlUri = "postgresql:///orderpay";  // libpq URI or key=value string
    std::string postgresqlPasswordFile;                    // libpq password file; empty: libpq's default
    int postgresqlPoolSize = 8;                            // connections per instance
    bool groupCommit = true;
    int maxBatch = 256;
    std::string instance;  // instance.name: the holder of the messages this instance leases
    /// PostgreSQL: how long a connection may go unanswered (a cut link, a
    /// lost machine) before either end gives it up, so that an instance cut
    /// off lets go of its transactions' row locks well within broker.lease
    /// (a third of it) and its clients are answered 503, not left waiting.
    std::chrono::milliseconds silentFor{5000};
};

struct WorkSettings {
    std::string defaultCurrency = "EUR";
    int orderWorkers = 1;
    std::chrono::milliseconds processingTime{6000};
    /// Orders in processing at once (started, not yet awaiting payment).
    int concurrency = 10000;
    int paymentWorkers = 1;
    int maxAttempts = 5;
    std::chrono::milliseconds retryBackoff{1000};
    std::string instance;  // instance.name, recorded in the step events

    /// Messages a worker takes at once, whatever the processing time: one
    /// lease, one transaction for the batch's steps. No step waits inside a
    /// transaction or a thread (the wait between steps is a timer message),
    /// so a batch holds its lease for milliseconds.
    static constexpr std::size_t kBatchSize = 64;
};

/// How webhooks are delivered (docs/webhooks.md).
struct WebhookSettings {
    /// A delivery not answered 2xx within this is a failed attempt.
    std::chrono::milliseconds timeout = std::chrono::seconds(10);
    /// Retried until this long after the event, then given up.
    std::chrono::milliseconds maxAge = std::chrono::hours(72);
    /// Deliveries in flight at once, per instance.
    int concurrency = 16;
    /// http:// and loopback, private and link-local addresses allowed.
    bool allowPrivateNetworks = false;
    std::string caFile;  // PEM of the CAs to trust; empty: the system's
};

struct LoggingSettings {
    std::string level = "information";
    std::string target = "auto";  // auto | journal | console
    std::string instance;         // instance.name: every journal record's INSTANCE=
};

struct Settings {
    /// instance.name: names this daemon in logs, readiness, metrics and the
    /// step events it writes (default <hostname>:<http.port>).
    std::string instanceName;
    HttpSettings http;
    BrokerSettings broker;
    StoreSettings store;
    WorkSettings work;
    LoggingSettings logging;
    WebhookSettings webhooks;
};

}  // namespace orderpay
