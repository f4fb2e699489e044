// The webhook receiver the end-to-end tests deliver to: tests/e2e/webhook_receiver.py,
// the tests' own Standard Webhooks verification (Python's hmac, nothing of the
// daemon's), run as a child process on 127.0.0.1 and driven by its control API.
#pragma once

#include "Daemon.h"
#include "HttpClient.h"

#include <string>
#include <vector>

namespace e2e {

class WebhookReceiver {
public:
    // One request a path received, as the receiver logged it.
    struct Entry {
        std::string path;
        double at = 0;             // unix seconds of arrival
        std::string webhookId;     // the headers
        std::string timestamp;
        std::string signature;
        std::string body;
        int answered = 0;          // 0: not answered (hang)
        int signatures = 0;        // v1 signatures in the header
        std::vector<bool> verified;  // per secret configured at arrival
        bool timestampOk = false;
        bool jsonOk = false;
        Poco::JSON::Object::Ptr json() const;  // the body parsed
    };

    // `tlsCert`/`tlsKey`: serve HTTPS with them.
    explicit WebhookReceiver(const std::string& tlsCert = {}, const std::string& tlsKey = {});
    ~WebhookReceiver();
    WebhookReceiver(const WebhookReceiver&) = delete;
    WebhookReceiver& operator=(const WebhookReceiver&) = delete;

    unsigned short port() const { return port_; }
    std::string url(const std::string& path) const;
    // Configures a path (see webhook_receiver.py); REQUIREs a 200.
    void configure(const std::string& path, const std::string& mode, const std::vector<std::string>& secrets,
                   int failures = 1, const std::string& retryAfter = "1") const;
    void setSecrets(const std::string& path, const std::vector<std::string>& secrets) const;
    std::vector<Entry> log(const std::string& path) const;
    // TLS connections whose handshake failed.
    long long tlsHandshakeFailures() const;
    // The receiver's own check against the Standard Webhooks example: its exit code.
    static int selfTest();

private:
    TempDir dir_;
    bool tls_ = false;
    pid_t pid_ = -1;
    unsigned short port_ = 0;
};

}  // namespace e2e
