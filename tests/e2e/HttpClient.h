// HTTP helpers for the end-to-end tests: a small client over
// Poco::Net::HTTPClientSession (one connection per request), a raw-socket
// helper for malformed input, JSON accessors, polling and problem checks.
#pragma once

#include <Poco/Dynamic/Var.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace e2e {

using namespace std::chrono_literals;

struct CaseInsensitiveLess {
    bool operator()(const std::string& a, const std::string& b) const;
};
using Headers = std::map<std::string, std::string, CaseInsensitiveLess>;

struct Response {
    int status = 0;
    Headers headers;
    std::string body;
    Poco::Dynamic::Var json;      // parsed when the content type is JSON
    std::string jsonError;        // why parsing failed, if it did

    bool has(const std::string& header) const { return headers.count(header) != 0; }
    std::string header(const std::string& name) const;
    std::string contentType() const { return header("Content-Type"); }
    bool isJson() const;
    // The body as a JSON object; FAILs the test if it is not one.
    // Uses Catch macros: call it from the test's own thread only.
    Poco::JSON::Object::Ptr obj() const;
    // The body as a JSON object, or null. Safe from any thread.
    Poco::JSON::Object::Ptr jsonObject() const;
    // Short description for failure messages.
    std::string describe() const;
};

// Sentinel for `request` headers: a header with this value is not sent at all
// (used to send a body without Content-Type).
inline const std::string kOmitHeader = "\x01omit";

class HttpClient {
public:
    explicit HttpClient(unsigned short port, std::string bearerToken = {});
    // A daemon on another host (the cluster tests' namespaces); the others
    // talk to 127.0.0.1.
    HttpClient(std::string host, unsigned short port, std::string bearerToken = {});

    // Sends one request on a fresh connection. A non-empty body defaults to
    // Content-Type: application/json. Throws on connection errors.
    Response request(const std::string& method, const std::string& path,
                     const std::string& body = {}, const Headers& headers = {}) const;
    // Body sent with Transfer-Encoding: chunked.
    Response requestChunked(const std::string& method, const std::string& path,
                            const std::string& body, const Headers& headers = {}) const;

    Response get(const std::string& path, const Headers& headers = {}) const
    { return request("GET", path, {}, headers); }
    Response post(const std::string& path, const std::string& body,
                  const Headers& headers = {}) const
    { return request("POST", path, body, headers); }

    Response postOrder(const std::string& body, const Headers& headers = {}) const
    { return post("/orders", body, headers); }
    // POSTs an order, REQUIREs 202 and returns its id.
    std::string createOrder(const std::string& body) const;
    Response getOrder(const std::string& id) const { return get("/orders/" + id); }
    Response cancelOrder(const std::string& id) const
    { return post("/orders/" + id + "/cancel", "", {}); }
    Response postPayment(const std::string& body, const Headers& headers = {}) const
    { return post("/payment/confirm", body, headers); }
    // POSTs a payment, REQUIREs 202 and returns its id.
    std::string createPayment(const std::string& body) const;

    // Polls GET /orders/{id} until its status is `status`; returns the last
    // answer. FAILs with the last body when the deadline passes.
    Response waitForOrderStatus(const std::string& id, const std::string& status,
                                std::chrono::milliseconds timeout = 20s) const;
    // Same for GET /payments/{id}.
    Response waitForPaymentStatus(const std::string& id, const std::string& status,
                                  std::chrono::milliseconds timeout = 20s) const;

    // Follows `next` from GET /orders?<query> to the end; returns every entry's
    // id in order. REQUIREs 200 on each page.
    std::vector<std::string> listAllOrderIds(const std::string& query = "limit=200") const;

    unsigned short port() const { return port_; }
    const std::string& host() const { return host_; }
    void setTimeout(std::chrono::milliseconds t) { timeout_ = t; }

private:
    std::string host_ = "127.0.0.1";
    unsigned short port_;
    std::string token_;
    std::chrono::milliseconds timeout_ = 15s;
};

// ---------------------------------------------------------------- raw socket

struct RawResult {
    std::string data;      // everything received
    bool closed = false;   // the server closed the connection (EOF or reset)
    int status = 0;        // HTTP status parsed from `data`, 0 if none
    std::string body;      // the part after the header block
    std::string contentType;
};

// Connects to 127.0.0.1:port, sends `bytes`, optionally shuts down the write
// side, then reads until the server closes or `timeout` passes.
RawResult rawExchange(unsigned short port, const std::string& bytes,
                      std::chrono::milliseconds timeout = 10s, bool shutdownWrite = false);
// Parses the first HTTP response in `data` (status, content type, body).
void parseRaw(RawResult& r);

// ---------------------------------------------------------------- recording

// When ORDERPAY_API_RECORD names a directory, every answer received through
// this file (HttpClient, rawExchange) is appended there as one JSON line
// (method, target, status, headers, body) to answers-<pid>.jsonl, for
// tests/openapi/check-answers.py to validate against daemon/http/openapi.json.
// Other clients of the suite (a raw socket of a test) may record theirs with
// this; `complete` is false when the body was cut short (a stream). Thread-safe.
void recordExchange(const std::string& method, const std::string& target, int status, const Headers& headers,
                    const std::string& body, bool complete = true);

// ---------------------------------------------------------------- polling

// Evaluates `pred` until it returns true or `timeout` passes; returns the
// last result. Sleeps `interval` between attempts.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = 20ms);

// ---------------------------------------------------------------- JSON

Poco::Dynamic::Var parseJson(const std::string& text);
std::optional<std::string> getString(const Poco::JSON::Object::Ptr& o, const std::string& key);
std::optional<std::int64_t> getInt(const Poco::JSON::Object::Ptr& o, const std::string& key);
Poco::JSON::Array::Ptr getArray(const Poco::JSON::Object::Ptr& o, const std::string& key);
Poco::JSON::Object::Ptr getObject(const Poco::JSON::Object::Ptr& o, const std::string& key);
bool isNull(const Poco::JSON::Object::Ptr& o, const std::string& key);
Poco::JSON::Object::Ptr arrayObject(const Poco::JSON::Array::Ptr& a, std::size_t i);
std::string stringify(const Poco::Dynamic::Var& v);
// A JSON string literal (with quotes) for `s`.
std::string quote(const std::string& s);

// The order's events (FAILs if missing).
std::vector<Poco::JSON::Object::Ptr> events(const Poco::JSON::Object::Ptr& order);
// Number of events with this type and (optional) step/status.
int countEvents(const std::vector<Poco::JSON::Object::Ptr>& ev, const std::string& type,
                const std::string& key = {}, const std::string& value = {});
// Checks the processing history of an order that reached awaiting_payment (or
// later): exactly one status event per status value, exactly one
// step_completed per step, each after a step_started of the same step, steps
// completed in order. Uses CHECK so every violation is reported.
void checkProcessedExactlyOnce(const Poco::JSON::Object::Ptr& order);

// ---------------------------------------------------------------- bodies

struct Item {
    std::string sku;
    std::int64_t quantity;
    std::int64_t unitAmount;
};
// A valid order body. Empty currency means "omit the field".
std::string orderJson(const std::string& customer, const std::vector<Item>& items = {{"BOOK-42", 2, 1250}},
                      const std::string& currency = "EUR",
                      const std::map<std::string, std::string>& metadata = {});
std::string paymentJson(const std::string& orderId, std::int64_t amount,
                        const std::string& currency = "EUR", const std::string& method = "card",
                        const std::string& reference = "psp-txn-1");

// REQUIREs an RFC 9457 problem: the status, Content-Type
// application/problem+json, `type` == expectedType (if non-empty), a title,
// `status` equal to the HTTP status and a string `detail`.
void requireProblem(const Response& r, int status, const std::string& expectedType = {});
// The `field`s of a validation problem's `errors` array.
std::vector<std::string> errorFields(const Response& r);

} // namespace e2e
