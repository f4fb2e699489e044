#include "app/Config.h"

#include "broker/AmqpConnection.h"
#include "http/Auth.h"
#include "store/postgresql/PgConnection.h"

#include <Poco/Environment.h>
#include <Poco/File.h>
#include <Poco/Format.h>
#include <Poco/Net/IPAddress.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/NumberParser.h>
#include <Poco/Util/PropertyFileConfiguration.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <limits>
#include <sstream>

#include <sys/stat.h>

namespace orderpay {
namespace {

/// What keeps `path` from being a password file libpq would use: it must
/// be a regular file that neither group nor others can read (libpq ignores
/// one that they can).
std::string checkPasswordFile(const std::string& path)
{
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return "'" + path + "' cannot be read: " + std::strerror(errno);
    if (!S_ISREG(st.st_mode)) return "'" + path + "' is not a regular file";
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
        return "'" + path + "' can be read by others (mode " + Poco::format("%04o", static_cast<unsigned>(st.st_mode & 07777)) +
               "): make it readable by the daemon's user only (chmod 600); libpq ignores it otherwise";
    return {};
}

std::string describe(const std::vector<ConfigProblem>& problems)
{
    std::ostringstream out;
    for (const auto& p : problems) out << p.source << ": " << p.key << ": " << p.message << "\n";
    return out.str();
}

void collectKeys(const Poco::Util::AbstractConfiguration& cfg, const std::string& prefix,
                 std::vector<std::string>& out)
{
    Poco::Util::AbstractConfiguration::Keys keys;
    cfg.keys(prefix, keys);
    for (const auto& k : keys) {
        const std::string full = prefix.empty() ? k : prefix + "." + k;
        if (cfg.hasProperty(full)) out.push_back(full);
        collectKeys(cfg, full, out);
    }
}

/// Reads raw values, remembering where each came from, and turns them into
/// typed settings.
class Reader {
public:
    std::map<std::string, std::pair<std::string, std::string>> values;  // key -> (value, source)
    std::vector<ConfigProblem> problems;

    const std::string* raw(const std::string& key) const
    {
        auto it = values.find(key);
        return it == values.end() ? nullptr : &it->second.first;
    }

    void problem(const std::string& key, const std::string& message)
    {
        auto it = values.find(key);
        problems.push_back({it == values.end() ? "-" : it->second.second, key, message});
    }

    void text(const std::string& key, std::string& out)
    {
        if (const auto* v = raw(key)) out = *v;
    }

    void integer(const std::string& key, long long lo, long long hi, auto& out)
    {
        const auto* v = raw(key);
        if (!v) return;
        Poco::Int64 n = 0;
        if (!Poco::NumberParser::tryParse64(*v, n) || n < lo || n > hi) {
            problem(key, "'" + *v + "' is not an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
            return;
        }
        out = static_cast<std::remove_reference_t<decltype(out)>>(n);
    }

    void boolean(const std::string& key, bool& out)
    {
        const auto* v = raw(key);
        if (!v) return;
        if (*v == "true" || *v == "yes" || *v == "on" || *v == "1") {
            out = true;
        } else if (*v == "false" || *v == "no" || *v == "off" || *v == "0") {
            out = false;
        } else {
            problem(key, "'" + *v + "' is not true or false");
        }
    }

    void choice(const std::string& key, const std::vector<std::string>& allowed, std::string& out)
    {
        const auto* v = raw(key);
        if (!v) return;
        if (std::find(allowed.begin(), allowed.end(), *v) == allowed.end()) {
            std::string list;
            for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
            problem(key, "'" + *v + "' is not one of: " + list);
            return;
        }
        out = *v;
    }

    void duration(const std::string& key, std::chrono::milliseconds bareUnit, std::chrono::milliseconds min,
                  std::chrono::milliseconds& out)
    {
        const auto* v = raw(key);
        if (!v) return;
        std::chrono::milliseconds d{};
        if (!Config::parseDuration(*v, bareUnit, d) || d < min) {
            problem(key, "'" + *v + "' is not a duration of at least " + std::to_string(min.count()) +
                             " ms (write e.g. 500ms, 10s, 5m, 24h)");
            return;
        }
        out = d;
    }
};

}  // namespace

ConfigError::ConfigError(std::vector<ConfigProblem> problems)
    : std::runtime_error(describe(problems)), problems_(std::move(problems))
{
}

const std::vector<std::string>& Config::knownKeys()
{
    static const std::vector<std::string> keys = {
        "http.host",
        "http.port",
        "http.max_threads",
        "http.max_queued",
        "http.max_body_bytes",
        "http.auth.token_file",
        "http.auth.admin_token_file",
        "http.allow_unauthenticated",
        "http.idempotency_ttl",
        "http.read_timeout",
        "broker.kind",
        "broker.lease",
        "broker.rabbitmq.uri",
        "broker.rabbitmq.prefetch",
        "broker.rabbitmq.queue_type",
        "broker.rabbitmq.prefix",
        "broker.rabbitmq.ca_file",
        "store.kind",
        "store.sqlite.path",
        "store.sqlite.synchronous",
        "store.postgresql.uri",
        "store.postgresql.password_file",
        "store.postgresql.pool_size",
        "store.group_commit",
        "store.max_batch",
        "orders.currency",
        "orders.workers",
        "orders.processing_ms",
        "orders.concurrency",
        "payments.workers",
        "retry.max_attempts",
        "retry.backoff_ms",
        "logging.level",
        "logging.target",
        "instance.name",
        "webhooks.timeout",
        "webhooks.max_age",
        "webhooks.concurrency",
        "webhooks.allow_private_networks",
        "webhooks.ca_file",
    };
    return keys;
}

bool Config::parseDuration(const std::string& text, std::chrono::milliseconds bareUnit, std::chrono::milliseconds& out)
{
    std::size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
    if (digits == 0 || digits > 12) return false;
    const long long n = std::stoll(text.substr(0, digits));
    const std::string unit = text.substr(digits);
    using namespace std::chrono;
    if (unit.empty()) out = n * bareUnit;
    else if (unit == "ms") out = milliseconds(n);
    else if (unit == "s") out = seconds(n);
    else if (unit == "m") out = minutes(n);
    else if (unit == "h") out = hours(n);
    else if (unit == "d") out = hours(24 * n);
    else return false;
    return true;
}

Settings Config::load(const std::string& file, bool fileRequired, const std::map<std::string, std::string>& overrides)
{
    Reader r;
    if (!file.empty()) {
        if (Poco::File(file).exists()) {
            try {
                Poco::AutoPtr<Poco::Util::PropertyFileConfiguration> props(
                    new Poco::Util::PropertyFileConfiguration(file));
                std::vector<std::string> keys;
                collectKeys(*props, "", keys);
                for (const auto& k : keys) r.values[k] = {props->getRawString(k), file};
            } catch (const Poco::Exception& e) {
                throw ConfigError({{file, "-", "cannot be read: " + e.displayText()}});
            }
        } else if (fileRequired) {
            throw ConfigError({{file, "-", "does not exist"}});
        }
    }
    for (const auto& [k, v] : overrides) r.values[k] = {v, "-D"};

    const auto& known = knownKeys();
    for (const auto& [k, v] : r.values) {
        if (std::find(known.begin(), known.end(), k) == known.end())
            r.problems.push_back({v.second, k, "unknown key (a typo? see orderpay.properties for every key)"});
    }

    using namespace std::chrono;
    Settings s;
    r.text("http.host", s.http.host);
    if (s.http.host.empty()) r.problem("http.host", "must not be empty");
    r.integer("http.port", 0, 65535, s.http.port);
    r.integer("http.max_threads", 1, 1024, s.http.maxThreads);
    r.integer("http.max_queued", 1, 65536, s.http.maxQueued);
    r.integer("http.max_body_bytes", 256, 64 * 1024 * 1024, s.http.maxBodyBytes);
    r.text("http.auth.token_file", s.http.authTokenFile);
    r.text("http.auth.admin_token_file", s.http.adminTokenFile);
    r.boolean("http.allow_unauthenticated", s.http.allowUnauthenticated);
    r.duration("http.idempotency_ttl", seconds(1), seconds(1), s.http.idempotencyTtl);
    r.duration("http.read_timeout", seconds(1), milliseconds(100), s.http.readTimeout);

    if (!s.http.authTokenFile.empty()) {
        try {
            http::Auth::check(s.http.authTokenFile);
        } catch (const std::exception& e) {
            r.problem("http.auth.token_file", e.what());
        }
    }
    if (!s.http.adminTokenFile.empty()) {
        try {
            http::Auth::check(s.http.adminTokenFile);
        } catch (const std::exception& e) {
            r.problem("http.auth.admin_token_file", e.what());
        }
    }
    // An open door is refused: a non-loopback address needs tokens, or an
    // explicit word that something else guards it.
    try {
        const Poco::Net::SocketAddress address(s.http.host, s.http.port);
        if (!address.host().isLoopback() && s.http.authTokenFile.empty() && !s.http.allowUnauthenticated) {
            r.problem("http.host", "'" + s.http.host +
                                       "' is not a loopback address and no http.auth.token_file is set: set one, "
                                       "or http.allow_unauthenticated = true if something else guards this address");
        }
    } catch (const Poco::Exception& e) {
        if (!s.http.host.empty()) r.problem("http.host", "'" + s.http.host + "' is not an address: " + e.message());
    }

    r.choice("broker.kind", {"embedded", "rabbitmq"}, s.broker.kind);
    r.duration("broker.lease", seconds(1), seconds(1), s.broker.lease);
    r.text("broker.rabbitmq.uri", s.broker.rabbitmqUri);
    r.integer("broker.rabbitmq.prefetch", 1, 65535, s.broker.rabbitmqPrefetch);
    r.choice("broker.rabbitmq.queue_type", {"classic", "quorum"}, s.broker.rabbitmqQueueType);
    r.text("broker.rabbitmq.prefix", s.broker.rabbitmqPrefix);
    r.text("broker.rabbitmq.ca_file", s.broker.rabbitmqCaFile);
    if (s.broker.kind == "rabbitmq") {
        try {
            AmqpUri::parseList(s.broker.rabbitmqUri);
        } catch (const std::exception& e) {
            // Never echo the URI: it holds the password.
            r.problem("broker.rabbitmq.uri", e.what());
        }
    }

    r.choice("store.kind", {"sqlite", "postgresql"}, s.store.kind);
    r.text("store.sqlite.path", s.store.sqlitePath);
    if (s.store.sqlitePath.empty()) r.problem("store.sqlite.path", "must not be empty");
    r.choice("store.sqlite.synchronous", {"full", "normal"}, s.store.sqliteSynchronous);
    r.text("store.postgresql.uri", s.store.postgresqlUri);
    if (const std::string why = pg::checkConninfo(s.store.postgresqlUri); !why.empty())
        r.problem("store.postgresql.uri", "libpq cannot parse it: " + why);  // never echoed: it may hold a password
    r.text("store.postgresql.password_file", s.store.postgresqlPasswordFile);
    if (!s.store.postgresqlPasswordFile.empty()) {
        if (const std::string why = checkPasswordFile(s.store.postgresqlPasswordFile); !why.empty())
            r.problem("store.postgresql.password_file", why);
    }
    r.integer("store.postgresql.pool_size", 1, 256, s.store.postgresqlPoolSize);
    r.boolean("store.group_commit", s.store.groupCommit);
    r.integer("store.max_batch", 1, 100000, s.store.maxBatch);

    r.text("orders.currency", s.work.defaultCurrency);
    if (s.work.defaultCurrency.size() != 3 ||
        !std::all_of(s.work.defaultCurrency.begin(), s.work.defaultCurrency.end(),
                     [](char c) { return c >= 'A' && c <= 'Z'; }))
        r.problem("orders.currency", "'" + s.work.defaultCurrency + "' is not three upper-case letters");
    r.integer("orders.workers", 1, 256, s.work.orderWorkers);
    long long processingMs = s.work.processingTime.count();
    r.integer("orders.processing_ms", 0, 3600 * 1000, processingMs);
    s.work.processingTime = milliseconds(processingMs);
    r.integer("orders.concurrency", 1, 1000000, s.work.concurrency);
    r.integer("payments.workers", 1, 256, s.work.paymentWorkers);
    r.integer("retry.max_attempts", 1, 1000, s.work.maxAttempts);
    long long backoffMs = s.work.retryBackoff.count();
    r.integer("retry.backoff_ms", 0, 3600 * 1000, backoffMs);
    s.work.retryBackoff = milliseconds(backoffMs);

    r.duration("webhooks.timeout", seconds(1), milliseconds(100), s.webhooks.timeout);
    if (s.webhooks.timeout > minutes(5)) r.problem("webhooks.timeout", "is over 5m; a receiver should answer at once");
    r.duration("webhooks.max_age", seconds(1), seconds(1), s.webhooks.maxAge);
    r.integer("webhooks.concurrency", 1, 1024, s.webhooks.concurrency);
    r.boolean("webhooks.allow_private_networks", s.webhooks.allowPrivateNetworks);
    r.text("webhooks.ca_file", s.webhooks.caFile);
    if (!s.webhooks.caFile.empty() && !Poco::File(s.webhooks.caFile).exists())
        r.problem("webhooks.ca_file", "'" + s.webhooks.caFile + "' does not exist");

    r.choice("logging.level",
             {"fatal", "critical", "error", "warning", "notice", "information", "debug", "trace"}, s.logging.level);
    r.choice("logging.target", {"auto", "journal", "console"}, s.logging.target);

    r.text("instance.name", s.instanceName);
    if (s.instanceName.empty()) s.instanceName = Poco::Environment::nodeName() + ":" + std::to_string(s.http.port);
    if (s.instanceName.empty() || s.instanceName.size() > 100 ||
        !std::all_of(s.instanceName.begin(), s.instanceName.end(), [](char c) { return c > ' ' && c < 0x7f; }))
        r.problem("instance.name", "'" + s.instanceName + "' is not 1 to 100 printable ASCII characters without spaces");
    s.logging.instance = s.instanceName;
    s.work.instance = s.instanceName;
    s.store.instance = s.instanceName;
    s.store.silentFor = std::max<std::chrono::milliseconds>(std::chrono::seconds(1), s.broker.lease / 3);

    if (!r.problems.empty()) throw ConfigError(std::move(r.problems));
    return s;
}

}  // namespace orderpay
