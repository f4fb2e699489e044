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

#include <Poco/Base64Encoder.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <strings.h>
#include <unistd.h>

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
    bool complete = true;
    try {
        Poco::StreamCopier::copyToString(in, r.body);
    } catch (const Poco::Exception&) {
        // connection closed mid-body: keep what arrived
        complete = false;
    }
    fillJson(r);
    recordExchange(method, path, r.status, r.headers, r.body, complete);
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

// ---------------------------------------------------------------- recording

namespace {

// Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF):
// what a JSON reader takes as text.
bool validUtf8(const std::string& s)
{
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t n = 0;
        unsigned char low = 0x80, high = 0xBF;  // the range of the byte after the lead
        if (c < 0x80) n = 0;
        else if (c >= 0xC2 && c <= 0xDF) n = 1;
        else if (c >= 0xE0 && c <= 0xEF) n = 2, low = c == 0xE0 ? 0xA0 : 0x80, high = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) n = 3, low = c == 0xF0 ? 0x90 : 0x80, high = c == 0xF4 ? 0x8F : 0xBF;
        else return false;
        if (s.size() - i <= n) return false;
        for (std::size_t k = 1; k <= n; ++k) {
            const auto b = static_cast<unsigned char>(s[i + k]);
            if (k == 1 ? (b < low || b > high) : (b & 0xC0) != 0x80) return false;
        }
        i += n + 1;
    }
    return true;
}

// A JSON string for any bytes (recording needs more than `quote`: every control byte, and
// the caller guarantees UTF-8).
std::string jsonString(const std::string& s)
{
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20 || c == 0x7F) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

// Which of the four e2e configurations this process runs (coverage is
// counted over all of them together).
std::string configuration()
{
    const char* pg = std::getenv("ORDERPAY_E2E_POSTGRESQL_DIR");
    const char* mq = std::getenv("ORDERPAY_E2E_RABBITMQ_ENV");
    const bool postgresql = pg && *pg, rabbitmq = mq && *mq;
    if (postgresql && rabbitmq) return "postgresql-rabbitmq";
    if (postgresql) return "postgresql";
    return rabbitmq ? "rabbitmq" : "embedded";
}

std::string currentTest()
{
    try {
        return Catch::getResultCapture().getCurrentTestName();
    } catch (...) {
        return {};  // outside a test case
    }
}

class Recorder {
public:
    static Recorder& instance()
    {
        static Recorder recorder;
        return recorder;
    }

    void write(const std::string& line)
    {
        if (!file_) return;
        std::lock_guard lock(mutex_);
        // One write and a flush a line: a test that fails (or a process that
        // dies) keeps what it recorded so far.
        std::fwrite(line.data(), 1, line.size(), file_);
        std::fflush(file_);
    }

private:
    Recorder()
    {
        const char* dir = std::getenv("ORDERPAY_API_RECORD");
        if (!dir || !*dir) return;
        const std::string path = std::string(dir) + "/answers-" + std::to_string(::getpid()) + ".jsonl";
        file_ = std::fopen(path.c_str(), "a");
        if (!file_) std::fprintf(stderr, "ORDERPAY_API_RECORD: cannot open %s\n", path.c_str());
    }
    ~Recorder()
    {
        if (file_) std::fclose(file_);
    }

    std::mutex mutex_;
    std::FILE* file_ = nullptr;
};

// The first answer of a raw exchange, recorded with the request line of
// what was sent (a request that has none is recorded with an empty method).
void recordRaw(const std::string& sent, const RawResult& r)
{
    if (r.status < 200) return;  // nothing parsed, or an interim 100 Continue
    std::string method, target;
    const auto eol = sent.find("\r\n");
    std::istringstream line(sent.substr(0, eol));
    std::string version;
    if (!(line >> method >> target >> version) || version.rfind("HTTP/", 0) != 0) method.clear(), target.clear();
    Headers headers;
    const auto end = r.data.find("\r\n\r\n");
    std::istringstream lines(r.data.substr(0, end));
    std::string h;
    std::getline(lines, h);  // the status line
    while (std::getline(lines, h)) {
        if (!h.empty() && h.back() == '\r') h.pop_back();
        const auto colon = h.find(':');
        if (colon == std::string::npos) continue;
        std::string value = h.substr(colon + 1);
        value.erase(0, value.find_first_not_of(" \t"));
        headers.emplace(h.substr(0, colon), value);
    }
    // Only the first answer: what follows a Content-Length body is the next one.
    std::string body = r.body;
    bool complete = end != std::string::npos;
    if (const auto it = headers.find("Content-Length"); it != headers.end()) {
        const auto length = static_cast<std::size_t>(std::strtoull(it->second.c_str(), nullptr, 10));
        complete = complete && body.size() >= length;
        if (body.size() > length) body.resize(length);
    } else if (headers.find("Transfer-Encoding") == headers.end()) {
        complete = complete && r.closed;  // delimited by the end of the connection
    }
    recordExchange(method, target, r.status, headers, body, complete);
}

} // namespace

void recordExchange(const std::string& method, const std::string& target, int status, const Headers& headers,
                    const std::string& body, bool complete)
{
    Recorder& recorder = Recorder::instance();
    constexpr std::size_t kMaxBody = 256 * 1024;  // an event stream or a metrics page need not be kept whole
    const std::string test = currentTest();
    std::string line = "{\"configuration\":" + jsonString(configuration()) + ",\"test\":" +
                       jsonString(validUtf8(test) ? test : std::string()) +
                       ",\"method\":" + jsonString(validUtf8(method) ? method : std::string()) +
                       ",\"target\":" + jsonString(validUtf8(target) ? target : std::string()) +
                       ",\"status\":" + std::to_string(status) + ",\"headers\":{";
    bool first = true;
    for (const auto& [name, value] : headers) {
        if (!validUtf8(name) || !validUtf8(value)) continue;
        line += (first ? "" : ",") + jsonString(lower(name)) + ":" + jsonString(value);
        first = false;
    }
    line += "},\"complete\":";
    line += complete && body.size() <= kMaxBody ? "true" : "false";
    const std::string kept = body.substr(0, kMaxBody);
    if (validUtf8(kept)) {
        line += ",\"body\":" + jsonString(kept);
    } else {
        std::ostringstream b64;
        Poco::Base64Encoder encoder(b64);
        encoder.rdbuf()->setLineLength(0);
        encoder << kept;
        encoder.close();
        line += ",\"body_base64\":" + jsonString(b64.str());
    }
    recorder.write(line + "}\n");
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
    recordRaw(bytes, result);
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
