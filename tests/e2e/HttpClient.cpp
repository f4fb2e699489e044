#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <Poco/Exception.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/Stringifier.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/StreamCopier.h>
#include <Poco/Timespan.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <sstream>
#include <strings.h>

namespace e2e {

namespace {

Poco::Timespan toTimespan(std::chrono::milliseconds ms)
{
    return Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(ms.count()) * 1000);
}

bool startsWith(const std::string& s, const std::string& prefix)
{
    return s.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), s.begin());
}

std::string lower(std::string s)
{
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
}

void fillJson(Response& r)
{
    if (!r.isJson() || r.body.empty()) return;
    try {
        r.json = parseJson(r.body);
    } catch (const Poco::Exception& e) {
        r.jsonError = e.displayText();
    } catch (const std::exception& e) {
        r.jsonError = e.what();
    }
}

} // namespace

bool CaseInsensitiveLess::operator()(const std::string& a, const std::string& b) const
{
    return ::strcasecmp(a.c_str(), b.c_str()) < 0;
}

// ---------------------------------------------------------------- Response

std::string Response::header(const std::string& name) const
{
    auto it = headers.find(name);
    return it == headers.end() ? std::string{} : it->second;
}

bool Response::isJson() const
{
    auto ct = lower(contentType());
    return ct.find("json") != std::string::npos;
}

Poco::JSON::Object::Ptr Response::obj() const
{
    INFO(describe());
    if (!jsonError.empty()) FAIL("response body is not valid JSON: " << jsonError);
    if (json.isEmpty()) FAIL("response has no JSON body");
    Poco::JSON::Object::Ptr o;
    try {
        o = json.extract<Poco::JSON::Object::Ptr>();
    } catch (...) {
        FAIL("response body is not a JSON object");
    }
    REQUIRE(o);
    return o;
}

Poco::JSON::Object::Ptr Response::jsonObject() const
{
    if (json.type() != typeid(Poco::JSON::Object::Ptr)) return {};
    return json.extract<Poco::JSON::Object::Ptr>();
}

std::string Response::describe() const
{
    std::ostringstream s;
    s << "HTTP " << status << " [" << contentType() << "] ";
    if (body.size() > 1500)
        s << body.substr(0, 1500) << "... (" << body.size() << " bytes)";
    else
        s << body;
    return s.str();
}

// ---------------------------------------------------------------- HttpClient

HttpClient::HttpClient(unsigned short port, std::string bearerToken)
    : port_(port), token_(std::move(bearerToken))
{
}

HttpClient::HttpClient(std::string host, unsigned short port, std::string bearerToken)
    : host_(std::move(host)), port_(port), token_(std::move(bearerToken))
{
}

namespace {

Response perform(const std::string& host, unsigned short port, std::chrono::milliseconds timeout, const std::string& token,
                 const std::string& method, const std::string& path, const std::string& body,
                 const Headers& headers, bool chunked)
{
    Poco::Net::HTTPClientSession session(host, port);
    session.setTimeout(toTimespan(timeout));
    session.setKeepAlive(false);

    Poco::Net::HTTPRequest req(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
    bool explicitContentType = false;
    bool explicitAuth = false;
    for (const auto& [k, v] : headers) {
        if (::strcasecmp(k.c_str(), "Content-Type") == 0) explicitContentType = true;
        if (::strcasecmp(k.c_str(), "Authorization") == 0) explicitAuth = true;
        if (v == kOmitHeader) continue;
        req.set(k, v);
    }
    if (!token.empty() && !explicitAuth) req.set("Authorization", "Bearer " + token);
    bool hasBody = !body.empty() || method == "POST" || method == "PUT" || method == "PATCH";
    if (hasBody) {
        if (!body.empty() && !explicitContentType) req.setContentType("application/json");
        if (chunked)
            req.setChunkedTransferEncoding(true);
        else
            req.setContentLength(static_cast<std::streamsize>(body.size()));
    }

    std::ostream& out = session.sendRequest(req);
    // If the server answers early (413) and stops reading, the write may
    // fail; the stream then just goes bad and we still read the answer.
    if (!body.empty()) out.write(body.data(), static_cast<std::streamsize>(body.size()));

    Poco::Net::HTTPResponse resp;
    std::istream& in = session.receiveResponse(resp);
    Response r;
    r.status = static_cast<int>(resp.getStatus());
    for (const auto& [k, v] : resp) {
        auto it = r.headers.find(k);
        if (it == r.headers.end())
            r.headers.emplace(k, v);
        else
            it->second += ", " + v;
    }
    try {
        Poco::StreamCopier::copyToString(in, r.body);
    } catch (const Poco::Exception&) {
        // connection closed mid-body: keep what arrived
    }
    fillJson(r);
    return r;
}

} // namespace

Response HttpClient::request(const std::string& method, const std::string& path,
                             const std::string& body, const Headers& headers) const
{
    return perform(host_, port_, timeout_, token_, method, path, body, headers, false);
}

Response HttpClient::requestChunked(const std::string& method, const std::string& path,
                                    const std::string& body, const Headers& headers) const
{
    return perform(host_, port_, timeout_, token_, method, path, body, headers, true);
}

std::string HttpClient::createOrder(const std::string& body) const
{
    Response r = postOrder(body);
    INFO("POST /orders " << body << " -> " << r.describe());
    REQUIRE(r.status == 202);
    auto id = getString(r.obj(), "id");
    REQUIRE(id.has_value());
    return *id;
}

std::string HttpClient::createPayment(const std::string& body) const
{
    Response r = postPayment(body);
    INFO("POST /payment/confirm " << body << " -> " << r.describe());
    REQUIRE(r.status == 202);
    auto id = getString(r.obj(), "id");
    REQUIRE(id.has_value());
    return *id;
}

namespace {

Response waitForStatus(const HttpClient& c, const std::string& path, const std::string& status,
                       std::chrono::milliseconds timeout)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    Response last;
    std::string lastError;
    for (;;) {
        try {
            last = c.get(path);
            lastError.clear();
            if (last.status == 200 && last.json.type() == typeid(Poco::JSON::Object::Ptr)) {
                auto s = getString(last.obj(), "status");
                if (s && *s == status) return last;
            }
        } catch (const Poco::Exception& e) {
            lastError = e.displayText();
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            FAIL("GET " << path << " did not reach status '" << status << "' within "
                 << timeout.count() << " ms; last answer: "
                 << (lastError.empty() ? last.describe() : lastError));
        }
        std::this_thread::sleep_for(25ms);  // poll interval, bounded by the deadline above
    }
}

} // namespace

Response HttpClient::waitForOrderStatus(const std::string& id, const std::string& status,
                                        std::chrono::milliseconds timeout) const
{
    return waitForStatus(*this, "/orders/" + id, status, timeout);
}

Response HttpClient::waitForPaymentStatus(const std::string& id, const std::string& status,
                                          std::chrono::milliseconds timeout) const
{
    return waitForStatus(*this, "/payments/" + id, status, timeout);
}

std::vector<std::string> HttpClient::listAllOrderIds(const std::string& query) const
{
    std::vector<std::string> ids;
    std::string path = "/orders?" + query;
    for (int page = 0; page < 100000; ++page) {
        Response r = get(path);
        INFO("GET " << path << " -> " << r.describe());
        REQUIRE(r.status == 200);
        auto o = r.obj();
        auto orders = getArray(o, "orders");
        REQUIRE(orders);
        for (std::size_t i = 0; i < orders->size(); ++i) {
            auto id = getString(arrayObject(orders, i), "id");
            REQUIRE(id.has_value());
            ids.push_back(*id);
        }
        REQUIRE(o->has("next"));
        if (isNull(o, "next")) return ids;
        auto next = getString(o, "next");
        REQUIRE(next.has_value());
        REQUIRE(*next != path);
        path = *next;
    }
    FAIL("pagination did not end");
    return ids;
}

// ---------------------------------------------------------------- raw socket

void parseRaw(RawResult& r)
{
    r.status = 0;
    r.body.clear();
    r.contentType.clear();
    const std::string& d = r.data;
    if (!startsWith(d, "HTTP/1.")) return;
    auto sp = d.find(' ');
    if (sp == std::string::npos || sp + 4 > d.size()) return;
    r.status = std::atoi(d.substr(sp + 1, 3).c_str());
    auto end = d.find("\r\n\r\n");
    std::string head = d.substr(0, end);
    std::string body = end == std::string::npos ? std::string{} : d.substr(end + 4);
    bool chunked = false;
    std::istringstream lines(head);
    std::string line;
    while (std::getline(lines, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string name = lower(line.substr(0, colon));
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(" \t"));
        if (name == "content-type") r.contentType = value;
        if (name == "transfer-encoding" && lower(value).find("chunked") != std::string::npos)
            chunked = true;
    }
    if (chunked) {
        std::string decoded;
        std::size_t pos = 0;
        while (pos < body.size()) {
            auto eol = body.find("\r\n", pos);
            if (eol == std::string::npos) break;
            std::size_t len = std::strtoul(body.substr(pos, eol - pos).c_str(), nullptr, 16);
            if (len == 0) break;
            decoded += body.substr(eol + 2, len);
            pos = eol + 2 + len + 2;
        }
        body = decoded;
    }
    r.body = body;
}

RawResult rawExchange(unsigned short port, const std::string& bytes,
                      std::chrono::milliseconds timeout, bool shutdownWrite)
{
    RawResult result;
    Poco::Net::StreamSocket sock;
    sock.connect(Poco::Net::SocketAddress("127.0.0.1", port), toTimespan(5s));
    try {
        std::size_t sent = 0;
        while (sent < bytes.size()) {
            int n = sock.sendBytes(bytes.data() + sent, static_cast<int>(bytes.size() - sent));
            if (n <= 0) break;
            sent += static_cast<std::size_t>(n);
        }
        if (shutdownWrite) sock.shutdownSend();
    } catch (const Poco::Exception&) {
        // the server may close early; read whatever it answered
    }
    auto deadline = std::chrono::steady_clock::now() + timeout;
    sock.setReceiveTimeout(toTimespan(100ms));
    char buf[8192];
    while (std::chrono::steady_clock::now() < deadline) {
        try {
            int n = sock.receiveBytes(buf, sizeof buf);
            if (n <= 0) {
                result.closed = true;
                break;
            }
            result.data.append(buf, static_cast<std::size_t>(n));
        } catch (const Poco::TimeoutException&) {
            continue;
        } catch (const Poco::Exception&) {
            result.closed = true;
            break;
        }
    }
    parseRaw(result);
    return result;
}

// ---------------------------------------------------------------- polling

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (pred()) return true;
        if (std::chrono::steady_clock::now() >= deadline) return pred();
        std::this_thread::sleep_for(interval);  // poll interval, bounded by the deadline above
    }
}

// ---------------------------------------------------------------- JSON

Poco::Dynamic::Var parseJson(const std::string& text)
{
    Poco::JSON::Parser parser;
    return parser.parse(text);
}

std::optional<std::string> getString(const Poco::JSON::Object::Ptr& o, const std::string& key)
{
    if (!o || !o->has(key)) return std::nullopt;
    Poco::Dynamic::Var v = o->get(key);
    if (v.isEmpty() || !v.isString()) return std::nullopt;
    return v.convert<std::string>();
}

std::optional<std::int64_t> getInt(const Poco::JSON::Object::Ptr& o, const std::string& key)
{
    if (!o || !o->has(key)) return std::nullopt;
    Poco::Dynamic::Var v = o->get(key);
    if (v.isEmpty() || !v.isInteger()) return std::nullopt;
    try {
        return v.convert<Poco::Int64>();
    } catch (...) {
        return std::nullopt;
    }
}

Poco::JSON::Array::Ptr getArray(const Poco::JSON::Object::Ptr& o, const std::string& key)
{
    if (!o || !o->has(key)) return {};
    return o->getArray(key);
}

Poco::JSON::Object::Ptr getObject(const Poco::JSON::Object::Ptr& o, const std::string& key)
{
    if (!o || !o->has(key)) return {};
    return o->getObject(key);
}

bool isNull(const Poco::JSON::Object::Ptr& o, const std::string& key)
{
    return o && o->has(key) && o->get(key).isEmpty();
}

Poco::JSON::Object::Ptr arrayObject(const Poco::JSON::Array::Ptr& a, std::size_t i)
{
    if (!a || i >= a->size()) return {};
    return a->getObject(static_cast<unsigned>(i));
}

std::string stringify(const Poco::Dynamic::Var& v)
{
    std::ostringstream s;
    Poco::JSON::Stringifier::stringify(v, s);
    return s.str();
}

std::string quote(const std::string& s)
{
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else {
                out += static_cast<char>(c);
            }
        }
    }
    out += '"';
    return out;
}

std::vector<Poco::JSON::Object::Ptr> events(const Poco::JSON::Object::Ptr& order)
{
    auto arr = getArray(order, "events");
    INFO("order: " << stringify(order));
    REQUIRE(arr);
    std::vector<Poco::JSON::Object::Ptr> out;
    for (std::size_t i = 0; i < arr->size(); ++i) {
        auto e = arrayObject(arr, i);
        REQUIRE(e);
        out.push_back(e);
    }
    return out;
}

int countEvents(const std::vector<Poco::JSON::Object::Ptr>& ev, const std::string& type,
                const std::string& key, const std::string& value)
{
    int n = 0;
    for (const auto& e : ev) {
        if (getString(e, "type").value_or("") != type) continue;
        if (!key.empty() && getString(e, key).value_or("\x01") != value) continue;
        ++n;
    }
    return n;
}

namespace {

// Index of the first (or last) event matching; -1 if none.
int findEvent(const std::vector<Poco::JSON::Object::Ptr>& ev, const std::string& type,
              const std::string& key, const std::string& value, bool last = false)
{
    int found = -1;
    for (std::size_t i = 0; i < ev.size(); ++i) {
        if (getString(ev[i], "type").value_or("") != type) continue;
        if (getString(ev[i], key).value_or("\x01") != value) continue;
        found = static_cast<int>(i);
        if (!last) break;
    }
    return found;
}

} // namespace

void checkProcessedExactlyOnce(const Poco::JSON::Object::Ptr& order)
{
    auto ev = events(order);
    INFO("order " << getString(order, "id").value_or("?") << " events: "
                  << stringify(getArray(order, "events")));
    for (const char* s : {"queued", "processing", "awaiting_payment"})
        CHECK(countEvents(ev, "status", "status", s) == 1);
    int prevCompleted = -1;
    for (const char* step : {"validate", "reserve_stock", "prepare_invoice"}) {
        INFO("step " << step);
        CHECK(countEvents(ev, "step_completed", "step", step) == 1);
        CHECK(countEvents(ev, "step_started", "step", step) >= 1);
        int started = findEvent(ev, "step_started", "step", step);
        int completed = findEvent(ev, "step_completed", "step", step);
        CHECK(started >= 0);
        CHECK(completed > started);
        CHECK(completed > prevCompleted);
        prevCompleted = completed;
    }
    int processing = findEvent(ev, "status", "status", "processing");
    int firstStep = findEvent(ev, "step_started", "step", "validate");
    int awaiting = findEvent(ev, "status", "status", "awaiting_payment");
    CHECK(findEvent(ev, "status", "status", "queued") == 0);
    CHECK(processing >= 0);
    CHECK(processing < firstStep);
    CHECK(awaiting > prevCompleted);
    // oldest first, every event timestamped
    std::string prevAt;
    for (const auto& e : ev) {
        auto at = getString(e, "at");
        CHECK(at.has_value());
        if (!at) continue;
        CHECK(*at >= prevAt);
        prevAt = *at;
    }
}

// ---------------------------------------------------------------- bodies

std::string orderJson(const std::string& customer, const std::vector<Item>& items,
                      const std::string& currency, const std::map<std::string, std::string>& metadata)
{
    std::string s = "{\"customer\":" + quote(customer);
    if (!currency.empty()) s += ",\"currency\":" + quote(currency);
    s += ",\"items\":[";
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) s += ',';
        s += "{\"sku\":" + quote(items[i].sku) + ",\"quantity\":" + std::to_string(items[i].quantity) +
             ",\"unit_amount\":" + std::to_string(items[i].unitAmount) + "}";
    }
    s += "]";
    if (!metadata.empty()) {
        s += ",\"metadata\":{";
        bool first = true;
        for (const auto& [k, v] : metadata) {
            if (!first) s += ',';
            first = false;
            s += quote(k) + ":" + quote(v);
        }
        s += "}";
    }
    s += "}";
    return s;
}

std::string paymentJson(const std::string& orderId, std::int64_t amount, const std::string& currency,
                        const std::string& method, const std::string& reference)
{
    return "{\"order_id\":" + quote(orderId) + ",\"amount\":" + std::to_string(amount) +
           ",\"currency\":" + quote(currency) + ",\"method\":" + quote(method) +
           ",\"reference\":" + quote(reference) + "}";
}

void requireProblem(const Response& r, int status, const std::string& expectedType)
{
    INFO(r.describe());
    REQUIRE(r.status == status);
    CHECK(startsWith(lower(r.contentType()), "application/problem+json"));
    auto o = r.obj();
    if (!expectedType.empty()) CHECK(getString(o, "type").value_or("<missing>") == expectedType);
    CHECK(!getString(o, "type").value_or("").empty());
    CHECK(!getString(o, "title").value_or("").empty());
    CHECK(getInt(o, "status").value_or(-1) == status);
    CHECK(getString(o, "detail").has_value());
}

std::vector<std::string> errorFields(const Response& r)
{
    std::vector<std::string> fields;
    auto o = r.obj();
    auto errs = getArray(o, "errors");
    INFO(r.describe());
    REQUIRE(errs);
    for (std::size_t i = 0; i < errs->size(); ++i) {
        auto e = arrayObject(errs, i);
        REQUIRE(e);
        CHECK(!getString(e, "message").value_or("").empty());
        fields.push_back(getString(e, "field").value_or("<no field>"));
    }
    return fields;
}

} // namespace e2e
