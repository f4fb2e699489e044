// Bad input never crashes the daemon, never stores anything and gets a clear
// JSON error; idle and slow clients never starve the others.
#include "Daemon.h"
#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <Poco/Exception.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Timespan.h>

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <sstream>
#include <thread>

using namespace e2e;

namespace {

void requireAlive(Daemon& d)
{
    INFO("daemon log tail:\n" << d.logTail());
    REQUIRE(d.running());
    HttpClient c(d.port());
    c.setTimeout(5s);
    auto r = c.get("/health/live");
    INFO(r.describe());
    REQUIRE(r.status == 200);
}

std::size_t orderCount(Daemon& d) { return HttpClient(d.port()).listAllOrderIds().size(); }

bool isProblem(const std::string& contentType)
{
    return contentType.rfind("application/problem+json", 0) == 0;
}

std::string postHead(const std::string& path, std::size_t contentLength)
{
    return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "Content-Length: " + std::to_string(contentLength) + "\r\nConnection: close\r\n\r\n";
}

// Reads from `s` until the peer closes (true) or `timeout` passes (false).
// While `trickle` is set, sends one byte of it every 200 ms.
bool closedByServer(Poco::Net::StreamSocket& s, std::chrono::milliseconds timeout,
                    const std::string& trickle = {}, std::string* received = nullptr)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    s.setReceiveTimeout(Poco::Timespan(0, 200 * 1000));
    std::size_t next = 0;
    char buf[4096];
    while (std::chrono::steady_clock::now() < deadline) {
        try {
            if (!trickle.empty()) {
                s.sendBytes(&trickle[next % trickle.size()], 1);
                ++next;
            }
            int n = s.receiveBytes(buf, sizeof buf);
            if (n <= 0) return true;
            if (received) received->append(buf, static_cast<std::size_t>(n));
        } catch (const Poco::TimeoutException&) {
            continue;
        } catch (const Poco::Exception&) {
            return true; // reset, broken pipe: closed
        }
    }
    return false;
}

// 200 orders of about 20 KB each (metadata), so a page of them is 4 MB.
void createBigOrders(const HttpClient& c)
{
    std::map<std::string, std::string> metadata;
    for (int k = 0; k < 20; ++k) metadata["key" + std::to_string(k)] = std::string(1000, 'm');
    for (int i = 0; i < 200; ++i)
        c.createOrder(orderJson("big" + std::to_string(i) + "@example.com", {{"BOOK-42", 1, 100}}, "EUR", metadata));
}

// A slow reader: asks for about 16 MB of orders (four pipelined pages) on a
// connection with a tiny receive buffer, and never reads the answers.
std::unique_ptr<Poco::Net::StreamSocket> connectHog(unsigned short port)
{
    // Created now, so its buffer can be set before connect.
    auto hog = std::make_unique<Poco::Net::StreamSocket>(Poco::Net::SocketAddress::IPv4);
    hog->setReceiveBufferSize(4096);
    hog->connect(Poco::Net::SocketAddress("127.0.0.1", port), Poco::Timespan(5, 0));
    std::string pipelined;
    for (int i = 0; i < 4; ++i) pipelined += "GET /orders?limit=200 HTTP/1.1\r\nHost: x\r\n\r\n";
    hog->sendBytes(pipelined.data(), static_cast<int>(pipelined.size()));
    return hog;
}

// Another process's hold on SQLite's write lock (BEGIN IMMEDIATE): the
// daemon's writer waits for it, up to its 5 s busy timeout.
class WriteLock {
public:
    explicit WriteLock(const std::string& dbPath)
    {
        REQUIRE(sqlite3_open_v2(dbPath.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
        sqlite3_busy_timeout(db_, 5000);
        REQUIRE(sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
        held_ = true;
    }
    ~WriteLock()
    {
        release();
        sqlite3_close(db_);
    }
    WriteLock(const WriteLock&) = delete;
    WriteLock& operator=(const WriteLock&) = delete;
    void release()
    {
        if (held_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        held_ = false;
    }

private:
    sqlite3* db_ = nullptr;
    bool held_ = false;
};

} // namespace

TEST_CASE("A truncated body (Content-Length larger than sent) stores nothing and harms nothing", "[badinput]")
{
    Daemon d({"orders.processing_ms=0", "http.read_timeout=2s"});
    const std::string partial = R"({"customer":"trunc@example.com","items":[{"sku":"A",)";

    // Half-close: the server sees EOF before the announced length.
    auto r = rawExchange(d.port(), postHead("/orders", 1000) + partial, 10s, /*shutdownWrite=*/true);
    INFO("answer: " << r.data);
    CHECK(r.closed);
    if (r.status != 0) CHECK((r.status >= 400 && r.status < 500));
    requireAlive(d);

    // Full close right after sending.
    {
        Poco::Net::StreamSocket s;
        s.connect(Poco::Net::SocketAddress("127.0.0.1", d.port()), Poco::Timespan(5, 0));
        std::string bytes = postHead("/orders", 5000) + partial;
        s.sendBytes(bytes.data(), static_cast<int>(bytes.size()));
        s.close();
    }
    requireAlive(d);

    // Stalled: the rest never comes; read_timeout drops it.
    {
        Poco::Net::StreamSocket s;
        s.connect(Poco::Net::SocketAddress("127.0.0.1", d.port()), Poco::Timespan(5, 0));
        std::string bytes = postHead("/orders", 1000) + partial;
        s.sendBytes(bytes.data(), static_cast<int>(bytes.size()));
        std::string answer;
        CHECK(closedByServer(s, 8s, {}, &answer));
        INFO("answer: " << answer);
        RawResult parsed;
        parsed.data = answer;
        parseRaw(parsed);
        if (parsed.status != 0) CHECK((parsed.status == 408 || parsed.status == 400));
    }
    requireAlive(d);
    CHECK(orderCount(d) == 0);
    // The daemon still takes orders.
    HttpClient(d.port()).createOrder(orderJson("after-trunc@example.com"));
    CHECK(orderCount(d) == 1);
}

TEST_CASE("Invalid UTF-8 in a string is a 400 malformed-json problem", "[badinput]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"lone continuation bytes", "\xff\xfe"},
        {"overlong slash", "\xc0\xaf"},
        {"truncated sequence", "abc\xe2\x82"},
        {"surrogate encoded in UTF-8", "\xed\xa0\x80"},
        {"code point above U+10FFFF", "\xf4\x90\x80\x80"},
        {"latin-1 e acute", "caf\xe9"},
    };
    for (const auto& [name, bad] : cases) {
        INFO("case: " << name);
        auto body = R"({"customer":")" + bad + R"(","items":[{"sku":"A","quantity":1,"unit_amount":1}]})";
        auto r = c.postOrder(body);
        requireProblem(r, 400, "/problems/malformed-json");
        // Also as metadata value and as an object key.
        auto r2 = c.postOrder(R"({"customer":"u@example.com","items":[{"sku":"A","quantity":1,"unit_amount":1}],"metadata":{"k":")" + bad + R"("}})");
        requireProblem(r2, 400, "/problems/malformed-json");
        auto r3 = c.postOrder(R"({"customer":"u@example.com","items":[{"sku":"A","quantity":1,"unit_amount":1}],"metadata":{")" + bad + R"(":"v"}})");
        requireProblem(r3, 400, "/problems/malformed-json");
    }
    requireAlive(d);
    CHECK(orderCount(d) == 0);
    // Valid multi-byte UTF-8 is fine and comes back unchanged.
    auto ok = c.postOrder(orderJson("J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x93\xa6"));
    INFO(ok.describe());
    REQUIRE(ok.status == 202);
    CHECK(getString(ok.obj(), "customer").value_or("") == "J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x93\xa6");
}

TEST_CASE("100,000-deep nesting is refused and the daemon survives", "[badinput]")
{
    Daemon d({"orders.processing_ms=0", "http.max_body_bytes=1048576"});
    HttpClient c(d.port());
    const int depth = 100000;

    auto r = c.postOrder(std::string(depth, '['));
    requireProblem(r, 400, "/problems/malformed-json");
    requireAlive(d);
    requireProblem(c.postPayment(std::string(depth, '[')), 400, "/problems/malformed-json");
    requireAlive(d);

    r = c.postOrder(R"({"customer":)" + std::string(depth, '['));
    requireProblem(r, 400, "/problems/malformed-json");
    requireAlive(d);

    std::string objects;
    for (int i = 0; i < depth / 2; ++i) objects += "{\"a\":";
    r = c.postOrder(objects);
    requireProblem(r, 400, "/problems/malformed-json");
    requireAlive(d);

    // Well-formed but absurdly deep: refused (400 for depth, or 422), never a crash.
    std::string balanced = std::string(depth, '[') + std::string(depth, ']');
    r = c.postOrder(balanced);
    INFO(r.describe());
    CHECK((r.status == 400 || r.status == 422));
    CHECK(isProblem(r.contentType()));
    requireAlive(d);

    std::string inMetadata = R"({"customer":"deep@example.com","items":[{"sku":"A","quantity":1,"unit_amount":1}],"metadata":{"k":)" +
                             std::string(depth, '[') + std::string(depth, ']') + "}}";
    r = c.postOrder(inMetadata);
    INFO(r.describe());
    CHECK((r.status == 400 || r.status == 422));
    CHECK(isProblem(r.contentType()));
    requireAlive(d);
    CHECK(orderCount(d) == 0);
}

TEST_CASE("Numbers beyond 64 bits are refused with a problem, never wrapped", "[badinput]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    struct Case { std::string quantity, unitAmount; };
    const std::vector<Case> cases = {
        {"123456789012345678901234567890", "1"},
        {"-123456789012345678901234567890", "1"},
        {"18446744073709551616", "1"},   // 2^64
        {"18446744073709551617", "1"},   // 2^64 + 1 (wraps to 1)
        {"9223372036854775808", "1"},    // 2^63
        {"4294967297", "1"},             // 2^32 + 1 (wraps to 1 in 32 bits)
        {"1e400", "1"},
        {"1", "123456789012345678901234567890"},
        {"1", "18446744073709551615"},
        {"2", "9223372036854775807"},    // total overflows int64
        {"1", "-9223372036854775809"},
        {"1", "1e30"},
    };
    for (const auto& tc : cases) {
        std::string body = R"({"customer":"big@example.com","items":[{"sku":"A","quantity":)" + tc.quantity +
                           R"(,"unit_amount":)" + tc.unitAmount + "}]}";
        INFO("body: " << body);
        auto r = c.postOrder(body);
        INFO(r.describe());
        CHECK((r.status == 400 || r.status == 422));
        CHECK(isProblem(r.contentType()));
        if (r.status == 422) {
            auto fields = errorFields(r);
            INFO("fields: " << Catch::Detail::stringify(fields));
            CHECK(!fields.empty());
        }
    }
    // Payments too.
    auto id = c.createOrder(orderJson("bigpay@example.com"));
    c.waitForOrderStatus(id, "awaiting_payment");
    for (const char* amount : {"18446744073709554116", "-18446744073709549116", "1e400", "123456789012345678901234567890"}) {
        std::string body = R"({"order_id":")" + id + R"(","amount":)" + amount +
                           R"(,"currency":"EUR","method":"card","reference":"r-big"})";
        INFO("body: " << body);
        auto r = c.postPayment(body);
        INFO(r.describe());
        CHECK((r.status == 400 || r.status == 422));
        CHECK(isProblem(r.contentType()));
    }
    requireAlive(d);
    CHECK(orderCount(d) == 1);
    CHECK(getArray(c.getOrder(id).obj(), "payments")->size() == 0);
}

TEST_CASE("Oversized or broken request heads get a 4xx and the daemon stays up", "[badinput]")
{
    Daemon d({"orders.processing_ms=0", "http.read_timeout=2s"});

    SECTION("a 20 KB header value")
    {
        auto r = rawExchange(d.port(), "GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " +
                                           std::string(20000, 'a') + "\r\nConnection: close\r\n\r\n", 10s);
        INFO("answer: " << r.data.substr(0, 500));
        CHECK((r.status >= 400 && r.status < 500));
        CHECK(isProblem(r.contentType));
    }
    SECTION("a 20 KB header value on POST /orders")
    {
        std::string body = orderJson("hdr@example.com");
        auto r = rawExchange(d.port(), "POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                       "X-Big: " + std::string(20000, 'a') + "\r\nContent-Length: " +
                                           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body, 10s);
        INFO("answer: " << r.data.substr(0, 500));
        CHECK((r.status >= 400 && r.status < 500));
        CHECK(isProblem(r.contentType));
    }
    SECTION("a 20 KB request target")
    {
        auto r = rawExchange(d.port(), "GET /orders/" + std::string(20000, 'a') +
                                           " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 10s);
        INFO("answer: " << r.data.substr(0, 500));
        CHECK((r.status >= 400 && r.status < 500));
        CHECK(isProblem(r.contentType));
    }
    SECTION("2,000 headers")
    {
        std::string req = "GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n";
        for (int i = 0; i < 2000; ++i) req += "X-H" + std::to_string(i) + ": v\r\n";
        auto r = rawExchange(d.port(), req + "Connection: close\r\n\r\n", 10s);
        INFO("answer: " << r.data.substr(0, 500));
        CHECK((r.status >= 400 && r.status < 500));
        CHECK(isProblem(r.contentType));
    }
    SECTION("a garbage request line")
    {
        auto r = rawExchange(d.port(), "HELLO THERE\r\n\r\n", 10s);
        INFO("answer: " << r.data.substr(0, 500));
        CHECK(r.status == 400);
        CHECK(isProblem(r.contentType));
    }
    SECTION("binary noise")
    {
        std::string noise;
        for (int i = 0; i < 4096; ++i) noise += static_cast<char>((i * 7919) & 0xff);
        auto r = rawExchange(d.port(), noise, 10s);
        INFO("answer: " << r.data.substr(0, 500));
        CHECK(r.closed);
        if (r.status != 0) CHECK((r.status >= 400 && r.status < 500));
    }
    requireAlive(d);
    CHECK(orderCount(d) == 0);
}

TEST_CASE("An idle client is dropped after http.read_timeout and never blocks others", "[badinput][timeout]")
{
    Daemon d({"orders.processing_ms=0", "http.read_timeout=1s"});
    HttpClient c(d.port());
    c.setTimeout(3s);

    Poco::Net::StreamSocket idle;
    idle.connect(Poco::Net::SocketAddress("127.0.0.1", d.port()), Poco::Timespan(5, 0));
    auto connectedAt = std::chrono::steady_clock::now();

    // Others are served while it sits there.
    for (int i = 0; i < 5; ++i) {
        auto r = c.get("/health/live");
        INFO(r.describe());
        CHECK(r.status == 200);
    }
    c.createOrder(orderJson("meanwhile@example.com"));

    std::string answer;
    bool closed = closedByServer(idle, 6s, {}, &answer);
    auto after = std::chrono::steady_clock::now() - connectedAt;
    INFO("answer: " << answer);
    CHECK(closed);
    // Dropped because of the timeout, not at once.
    CHECK(after >= 500ms);
    RawResult parsed;
    parsed.data = answer;
    parseRaw(parsed);
    if (parsed.status != 0) CHECK(parsed.status == 408);
    requireAlive(d);
}

TEST_CASE("A slow client trickling its headers is dropped after http.read_timeout", "[badinput][timeout]")
{
    Daemon d({"orders.processing_ms=0", "http.read_timeout=1s"});
    Poco::Net::StreamSocket slow;
    slow.connect(Poco::Net::SocketAddress("127.0.0.1", d.port()), Poco::Timespan(5, 0));
    std::string start = "GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    slow.sendBytes(start.data(), static_cast<int>(start.size()));
    // One byte every 200 ms of a header that never ends: the whole request
    // has not arrived within 1 s, so the server must drop it well before 6 s.
    std::string answer;
    CHECK(closedByServer(slow, 6s, "X-Slow-Header-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &answer));
    INFO("answer: " << answer);
    CHECK(answer.rfind("HTTP/1.1 408", 0) == 0);
    CHECK(answer.find("application/problem+json") != std::string::npos);
    requireAlive(d);
}

TEST_CASE("Many idle connections do not starve a real request", "[badinput][timeout]")
{
    Daemon d({"orders.processing_ms=0", "http.read_timeout=1s", "http.max_threads=2"});
    std::vector<std::unique_ptr<Poco::Net::StreamSocket>> idle;
    for (int i = 0; i < 16; ++i) {
        auto s = std::make_unique<Poco::Net::StreamSocket>();
        s->connect(Poco::Net::SocketAddress("127.0.0.1", d.port()), Poco::Timespan(5, 0));
        idle.push_back(std::move(s));
    }
    HttpClient c(d.port());
    c.setTimeout(3s);
    auto t0 = std::chrono::steady_clock::now();
    Response r;
    REQUIRE_NOTHROW(r = c.get("/health/live"));
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    INFO("took " << took.count() << " ms; " << r.describe());
    CHECK(r.status == 200);
    CHECK(took < 2500ms);
    // and all the idle ones are eventually dropped
    for (auto& s : idle) CHECK(closedByServer(*s, 10s));
    requireAlive(d);
}

TEST_CASE("A POST with neither Content-Length nor chunked encoding has no body and is answered at once",
          "[badinput][http]")
{
    // RFC 9112: such a request has no body. Poco's stream would wait for the
    // connection to close; the daemon must not (it held the answer for a
    // whole http.read_timeout before).
    // The first order takes the only place in processing for a minute, so
    // the second stays queued and can be cancelled.
    Daemon d({"orders.processing_ms=60000", "orders.concurrency=1", "http.read_timeout=5s"});
    HttpClient c(d.port());
    const auto first = c.createOrder(orderJson("first@example.com"));
    c.waitForOrderStatus(first, "processing", 20s);
    const auto id = c.createOrder(orderJson("second@example.com"));

    const auto started = std::chrono::steady_clock::now();
    auto cancel = rawExchange(d.port(),
                              "POST /orders/" + id + "/cancel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 4s);
    parseRaw(cancel);
    INFO(cancel.data);
    CHECK(cancel.status == 200);
    CHECK(cancel.body.find("\"cancelled\"") != std::string::npos);

    auto empty = rawExchange(d.port(),
                             "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             "Connection: close\r\n\r\n",
                             4s);
    parseRaw(empty);
    INFO(empty.data);
    CHECK(empty.status == 400);
    CHECK(isProblem(empty.contentType));
    // Both well before the 5 s read timeout (the raw exchange ends when the
    // server closes the connection after its answer).
    CHECK(std::chrono::steady_clock::now() - started < 3s);
}

TEST_CASE("Slow bodies on more connections than http.max_threads never starve /health/live", "[badinput][timeout][slowloris]")
{
    // Slowloris on the body: each connection sends a whole head, then its
    // body one byte at a time. No thread may be held by them: a request
    // goes to the parser only once it is whole (head and body), and is
    // dropped after http.read_timeout.
    Daemon d({"orders.processing_ms=0", "http.read_timeout=3s", "http.max_threads=2"});
    const std::string body = orderJson("slow@example.com");
    std::vector<std::unique_ptr<Poco::Net::StreamSocket>> slow;
    for (int i = 0; i < 8; ++i) {
        auto s = std::make_unique<Poco::Net::StreamSocket>();
        s->connect(Poco::Net::SocketAddress("127.0.0.1", d.port()), Poco::Timespan(5, 0));
        const std::string head = i % 2 == 0
            ? "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                  std::to_string(body.size()) + "\r\n\r\n"
            : "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              "Transfer-Encoding: chunked\r\n\r\n";
        s->sendBytes(head.data(), static_cast<int>(head.size()));
        slow.push_back(std::move(s));
    }
    std::atomic<bool> stop{false};
    std::thread trickler([&] {
        // One byte per connection every 100 ms until told to stop (the
        // deadline keeps a failing test from hanging here).
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        std::size_t next = 0;
        while (!stop && std::chrono::steady_clock::now() < deadline) {
            for (auto& s : slow) {
                try {
                    s->sendBytes(&body[next % body.size()], 1);
                } catch (const Poco::Exception&) {
                    // dropped by the server: fine
                }
            }
            ++next;
            std::this_thread::sleep_until(std::chrono::steady_clock::now() + 100ms);  // pacing until the next tick
        }
    });

    HttpClient c(d.port());
    c.setTimeout(3s);
    int answered = 0;
    std::chrono::milliseconds slowest{0};
    for (int i = 0; i < 10; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        Response r;
        REQUIRE_NOTHROW(r = c.get("/health/live"));
        auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
        slowest = std::max(slowest, took);
        if (r.status == 200) ++answered;
    }
    const auto id = c.createOrder(orderJson("meanwhile@example.com"));
    stop = true;
    trickler.join();
    INFO("slowest /health/live: " << slowest.count() << " ms");
    CHECK(answered == 10);
    CHECK(slowest < 1000ms);
    CHECK(c.getOrder(id).status == 200);
    // Every slow connection is dropped with a 408 once its time is up.
    for (auto& s : slow) {
        std::string answer;
        CHECK(closedByServer(*s, 10s, {}, &answer));
        INFO("answer: " << answer);
        CHECK(answer.rfind("HTTP/1.1 408", 0) == 0);
    }
    // and none of their half-sent orders was stored
    CHECK(orderCount(d) == 1);
    requireAlive(d);
}

TEST_CASE("Expect: 100-continue and a chunked body sent in pieces are answered as usual", "[badinput][http]")
{
    Daemon d({"orders.processing_ms=0", "http.read_timeout=5s"});
    const std::string body = orderJson("continue@example.com");

    // The client waits for "100 Continue" before it sends the body, as curl
    // does for larger bodies; the server must say it, not wait for the body.
    Poco::Net::StreamSocket s;
    s.connect(Poco::Net::SocketAddress("127.0.0.1", d.port()), Poco::Timespan(5, 0));
    s.setReceiveTimeout(Poco::Timespan(3, 0));
    const std::string head = "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    s.sendBytes(head.data(), static_cast<int>(head.size()));
    char buf[4096];
    int n = 0;
    REQUIRE_NOTHROW(n = s.receiveBytes(buf, sizeof buf));
    std::string interim(buf, static_cast<std::size_t>(std::max(n, 0)));
    INFO("interim: " << interim);
    REQUIRE(interim.rfind("HTTP/1.1 100 Continue\r\n\r\n", 0) == 0);
    s.sendBytes(body.data(), static_cast<int>(body.size()));
    std::string answer = interim.substr(std::string("HTTP/1.1 100 Continue\r\n\r\n").size());
    for (;;) {
        int m = 0;
        REQUIRE_NOTHROW(m = s.receiveBytes(buf, sizeof buf));
        if (m <= 0) break;
        answer.append(buf, static_cast<std::size_t>(m));
    }
    INFO("answer: " << answer);
    // Exactly one interim answer, then the final one.
    CHECK(answer.find("100 Continue") == std::string::npos);
    CHECK(answer.rfind("HTTP/1.1 202", 0) == 0);

    // A chunked body in two pieces with a pause between them.
    const std::string half = std::to_string(body.size() / 2);
    std::ostringstream first, second;
    first << "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
             "Connection: close\r\n\r\n"
          << std::hex << body.size() / 2 << "\r\n" << body.substr(0, body.size() / 2) << "\r\n";
    second << std::hex << body.size() - body.size() / 2 << "\r\n" << body.substr(body.size() / 2) << "\r\n0\r\n\r\n";
    Poco::Net::StreamSocket c;
    c.connect(Poco::Net::SocketAddress("127.0.0.1", d.port()), Poco::Timespan(5, 0));
    c.setReceiveTimeout(Poco::Timespan(0, 300 * 1000));
    const std::string a = first.str(), b = second.str();
    c.sendBytes(a.data(), static_cast<int>(a.size()));
    // Nothing is answered before the body is whole.
    CHECK_THROWS_AS(c.receiveBytes(buf, sizeof buf), Poco::TimeoutException);
    c.sendBytes(b.data(), static_cast<int>(b.size()));
    c.setReceiveTimeout(Poco::Timespan(3, 0));
    std::string chunkedAnswer;
    for (;;) {
        int m = 0;
        REQUIRE_NOTHROW(m = c.receiveBytes(buf, sizeof buf));
        if (m <= 0) break;
        chunkedAnswer.append(buf, static_cast<std::size_t>(m));
    }
    INFO("chunked answer: " << chunkedAnswer);
    CHECK(chunkedAnswer.rfind("HTTP/1.1 202", 0) == 0);
    CHECK(orderCount(d) == 2);
}

TEST_CASE("Writes beyond http.max_queued waiting for the database get 503 with Retry-After at once and recover",
          "[badinput][timeout][queue][sqlite]")
{
    // Another process holds SQLite's write lock: the daemon's writer waits
    // (up to its 5 s busy timeout) and every write waits for its commit.
    // One may wait (http.max_queued=1); the next is refused at once, and
    // nothing of it is stored; once the lock goes, the waiting one commits.
    Daemon d({"orders.processing_ms=60000", "http.max_queued=1"});
    HttpClient c(d.port());
    c.createOrder(orderJson("before@example.com"));  // the schema is there

    WriteLock lock(d.dbPath());

    const std::string body = orderJson("waits@example.com");
    Poco::Net::StreamSocket waiting;
    waiting.connect(Poco::Net::SocketAddress("127.0.0.1", d.port()), Poco::Timespan(5, 0));
    const std::string post = postHead("/orders", body.size()) + body;
    waiting.sendBytes(post.data(), static_cast<int>(post.size()));
    // The write waits for its commit: the gauge shows it.
    const bool queued = eventually([&] {
        return c.get("/metrics").body.find("\norderpay_http_answers_waiting 1\n") != std::string::npos;
    }, 3s);
    if (!queued) lock.release();
    REQUIRE(queued);

    const auto t0 = std::chrono::steady_clock::now();
    const std::string refusedBody = orderJson("refused@example.com");
    auto full = rawExchange(d.port(), postHead("/orders", refusedBody.size()) + refusedBody, 3s);
    const auto took = std::chrono::steady_clock::now() - t0;
    // Reads do not wait for the writer, and are not refused.
    auto live = c.get("/health/live");
    lock.release();
    parseRaw(full);
    INFO(full.data);
    CHECK(full.status == 503);
    CHECK(isProblem(full.contentType));
    CHECK(full.data.find("Retry-After:") != std::string::npos);
    CHECK(took < 2s);
    CHECK(live.status == 200);

    // The lock is gone: the waiting write commits and is answered.
    waiting.setReceiveTimeout(Poco::Timespan(10, 0));
    std::string answer;
    char buf[4096];
    int n = 0;
    REQUIRE_NOTHROW(n = waiting.receiveBytes(buf, sizeof buf));
    answer.assign(buf, static_cast<std::size_t>(std::max(n, 0)));
    INFO(answer);
    CHECK(answer.rfind("HTTP/1.1 202", 0) == 0);
    CHECK(orderCount(d) == 2);  // "before" and "waits"; nothing of the refused one
    CHECK(c.createOrder(orderJson("after@example.com")).size() > 0);
    requireAlive(d);
}

TEST_CASE("Slow readers on more connections than http.max_threads are cut off after http.read_timeout", "[badinput][timeout][slowloris]")
{
    // A client that does not take its answer must not hold a thread, nor
    // its answer's memory for long: its connection is cut once
    // http.read_timeout has passed since the answer, and /health/live is
    // answered meanwhile.
    Daemon d({"orders.processing_ms=60000", "http.max_threads=2", "http.read_timeout=2s"});
    HttpClient c(d.port());
    createBigOrders(c);
    std::vector<std::unique_ptr<Poco::Net::StreamSocket>> hogs;
    for (int i = 0; i < 3; ++i) hogs.push_back(connectHog(d.port()));
    // Every hog has answer bytes waiting, more than it takes.
    REQUIRE(eventually([&] {
        int answered = 0;
        for (auto& h : hogs) answered += h->available() > 0 ? 1 : 0;
        return answered == 3;
    }, 10s));

    c.setTimeout(10s);
    const auto t0 = std::chrono::steady_clock::now();
    Response r;
    REQUIRE_NOTHROW(r = c.get("/health/live"));
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    INFO("took " << took.count() << " ms; " << r.describe());
    CHECK(r.status == 200);
    CHECK(took < 2000ms);  // not held until the hogs are cut (read_timeout, 2 s)

    // The hogs are cut once they have not taken an answer for 2 s: then
    // only the client's own connection is open (a hog being read would be
    // served on, as it should).
    const bool hogsCut = eventually([&] {
        const std::string m = c.get("/metrics").body;
        return m.find("\norderpay_http_connections 1\n") != std::string::npos;
    }, 10s);
    CHECK(hogsCut);
    // Reading what they got ends well before their 16 MB.
    int cut = 0;
    for (auto& h : hogs) {
        std::size_t total = 0;
        bool ended = false;
        const auto deadline = std::chrono::steady_clock::now() + 15s;
        h->setReceiveTimeout(Poco::Timespan(1, 0));
        char buf[65536];
        while (!ended && std::chrono::steady_clock::now() < deadline) {
            try {
                const int n = h->receiveBytes(buf, sizeof buf);
                if (n <= 0) ended = true;
                else total += static_cast<std::size_t>(n);
            } catch (const Poco::TimeoutException&) {
                continue;
            } catch (const Poco::Exception&) {
                ended = true;  // reset
            }
        }
        INFO("received " << total << " bytes");
        CHECK(ended);
        if (total < 16u * 1000 * 1000) ++cut;
    }
    CHECK(cut == 3);
    requireAlive(d);
}

TEST_CASE("A pipeline of 20,000 requests in one go is answered in full and in order", "[badinput][http]")
{
    // The requests arrive faster than they are answered and fill the
    // server's receive limit again and again; each must be answered once,
    // in order, without the server's stack or time growing with the
    // pipeline (it once recursed once per request already received).
    Daemon d({"orders.processing_ms=0", "http.read_timeout=10s"});
    constexpr int kRequests = 20000;
    std::string pipeline;
    for (int i = 0; i < kRequests; ++i) {
        pipeline += i % 2 == 0 ? "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
                               : "GET /orders/ord_nothing HTTP/1.1\r\nHost: x\r\n\r\n";
    }
    Poco::Net::StreamSocket s;
    s.connect(Poco::Net::SocketAddress("127.0.0.1", d.port()), Poco::Timespan(5, 0));
    std::thread sender([&] {
        try {
            s.sendBytes(pipeline.data(), static_cast<int>(pipeline.size()));
        } catch (const Poco::Exception&) {
            // the count below tells
        }
    });
    std::string answers;
    s.setReceiveTimeout(Poco::Timespan(0, 200 * 1000));
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    auto statusLines = [&] {
        std::size_t n = 0;
        for (std::size_t at = answers.find("HTTP/1.1 "); at != std::string::npos; at = answers.find("HTTP/1.1 ", at + 1)) ++n;
        return n;
    };
    char buf[65536];
    while (std::chrono::steady_clock::now() < deadline) {
        try {
            const int n = s.receiveBytes(buf, sizeof buf);
            if (n <= 0) break;
            answers.append(buf, static_cast<std::size_t>(n));
            if (answers.size() > 100 * kRequests && statusLines() >= kRequests) break;
        } catch (const Poco::TimeoutException&) {
            if (statusLines() >= kRequests) break;
        } catch (const Poco::Exception&) {
            break;
        }
    }
    sender.join();
    // In order: 200, 404, 200, 404, ...
    std::size_t seen = 0, outOfOrder = 0;
    for (std::size_t at = answers.find("HTTP/1.1 "); at != std::string::npos; at = answers.find("HTTP/1.1 ", at + 1)) {
        const std::string expected = seen % 2 == 0 ? "HTTP/1.1 200" : "HTTP/1.1 404";
        if (answers.compare(at, expected.size(), expected) != 0) ++outOfOrder;
        ++seen;
    }
    CHECK(seen == kRequests);
    CHECK(outOfOrder == 0);
    requireAlive(d);
}

TEST_CASE("A client that sends its request and its end of stream together is answered and closed at once",
          "[badinput][http]")
{
    // The end of stream comes in the same read as the request: the server
    // must notice it then, not keep the connection until http.read_timeout.
    Daemon d({"orders.processing_ms=0", "http.read_timeout=8s"});
    const auto t0 = std::chrono::steady_clock::now();
    auto r = rawExchange(d.port(), "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n", 6s, /*shutdownWrite=*/true);
    const auto took = std::chrono::steady_clock::now() - t0;
    INFO(r.data);
    CHECK(r.status == 200);
    CHECK(r.closed);
    CHECK(took < 3s);
}

TEST_CASE("A cancel or a readiness probe waiting for the database holds up no other request", "[badinput][timeout][sqlite]")
{
    // One HTTP thread for every connection: a write that waited for its
    // commit on it would stall them all (up to the 5 s busy timeout here).
    // One place in processing, which the first order holds for a minute:
    // the second stays queued, so its cancel can succeed.
    Daemon d({"orders.processing_ms=60000", "orders.concurrency=1", "http.max_threads=1"});
    HttpClient c(d.port());
    c.createOrder(orderJson("first@example.com"));
    const auto id = c.createOrder(orderJson("cancel-me@example.com"));
    c.get("/health/ready");  // the first probe, while the database is free

    WriteLock lock(d.dbPath());
    Poco::Net::StreamSocket cancel;
    cancel.connect(Poco::Net::SocketAddress("127.0.0.1", d.port()), Poco::Timespan(5, 0));
    const std::string request = "POST /orders/" + id + "/cancel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    cancel.sendBytes(request.data(), static_cast<int>(request.size()));
    const bool waiting = eventually([&] {
        return c.get("/metrics").body.find("\norderpay_http_answers_waiting 1\n") != std::string::npos;
    }, 3s);
    c.setTimeout(2s);
    const auto t0 = std::chrono::steady_clock::now();
    Response live, ready, read;
    bool answered = true;
    try {
        live = c.get("/health/live");
        ready = c.get("/health/ready");  // starts a probe, which waits for the lock
        read = c.getOrder(id);
        c.get("/health/ready");
    } catch (const Poco::Exception&) {
        answered = false;
    }
    const auto took = std::chrono::steady_clock::now() - t0;
    lock.release();
    CHECK(waiting);
    CHECK(answered);
    CHECK(took < 1500ms);
    CHECK(live.status == 200);
    CHECK(read.status == 200);

    // The cancel is answered once the lock is gone.
    auto answer = [&] {
        cancel.setReceiveTimeout(Poco::Timespan(10, 0));
        char buf[8192];
        const int n = cancel.receiveBytes(buf, sizeof buf);
        return std::string(buf, static_cast<std::size_t>(std::max(n, 0)));
    }();
    INFO(answer);
    CHECK(answer.rfind("HTTP/1.1 200", 0) == 0);
    CHECK(answer.find("\"cancelled\"") != std::string::npos);
    requireAlive(d);
}

TEST_CASE("A request whose body can be framed two ways is a 400 and the connection is closed, nothing stored",
          "[badinput][http][smuggling]")
{
    Daemon d({"orders.processing_ms=0"});
    const std::string body = orderJson("framing@example.com");
    const std::string head = "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
    struct Case {
        std::string what, request;
    };
    const std::vector<Case> cases = {
        // A proxy that reads the other length sees the rest as a second request.
        {"two Content-Length values", head + "Content-Length: " + std::to_string(body.size()) +
                                          "\r\nContent-Length: 5\r\n\r\n" + body +
                                          "GET /orders HTTP/1.1\r\nHost: x\r\n\r\n"},
        {"Content-Length not a number", head + "Content-Length: +" + std::to_string(body.size()) + "\r\n\r\n" + body},
        {"Transfer-Encoding beside Content-Length",
         head + "Content-Length: " + std::to_string(body.size()) + "\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
        {"a Transfer-Encoding other than chunked", head + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
        {"two Transfer-Encoding headers",
         head + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
    };
    for (const auto& c : cases) {
        INFO("case: " << c.what);
        auto r = rawExchange(d.port(), c.request, 5s);
        parseRaw(r);
        INFO(r.data);
        CHECK(r.status == 400);
        CHECK(isProblem(r.contentType));
        CHECK(r.closed);
        // One answer only: the bytes after the head are never read as a request.
        CHECK(r.data.find("HTTP/1.1", 1) == std::string::npos);
    }
    // The same length twice is one length: served.
    auto same = rawExchange(d.port(),
                            head + "Content-Length: " + std::to_string(body.size()) + "\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body,
                            5s);
    parseRaw(same);
    INFO(same.data);
    CHECK(same.status == 202);
    CHECK(orderCount(d) == 1);
    requireAlive(d);
}

TEST_CASE("A chunk size past http.max_body_bytes is a 413 at once, without waiting for the chunk", "[badinput][http]")
{
    Daemon d({"orders.processing_ms=0", "http.max_body_bytes=1024", "http.read_timeout=10s"});
    const auto started = std::chrono::steady_clock::now();
    // Announces a 1 MiB chunk and sends a few bytes of it: the client waits
    // for the answer before it sends more.
    auto r = rawExchange(d.port(),
                         "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n100000\r\n{\"customer\":",
                         5s);
    parseRaw(r);
    INFO(r.data);
    CHECK(r.status == 413);
    CHECK(isProblem(r.contentType));
    CHECK(r.closed);
    CHECK(std::chrono::steady_clock::now() - started < 2s);
    // Chunks that only add up past the limit: the same.
    auto sum = rawExchange(d.port(),
                           "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n200\r\n" + std::string(512, ' ') + "\r\n300\r\n",
                           5s);
    parseRaw(sum);
    INFO(sum.data);
    CHECK(sum.status == 413);
    CHECK(orderCount(d) == 0);
    requireAlive(d);
}

TEST_CASE("A JSON object with a key given twice is a 422 naming the key, nothing stored", "[badinput][validation]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    struct Case {
        std::string body, field;
    };
    const std::string items = R"("items":[{"sku":"A","quantity":1,"unit_amount":100}])";
    const std::vector<Case> cases = {
        {R"({"customer":"a@example.com","currency":"EUR",)" + items + R"(,"customer":"b@example.com"})", "customer"},
        {R"({"customer":"a","currency":"EUR","items":[{"sku":"A","quantity":1,"unit_amount":100},)"
         R"({"sku":"B","quantity":1,"sku":"C","unit_amount":1}]})",
         "items[1].sku"},
        {R"({"customer":"a","currency":"EUR",)" + items + R"(,"metadata":{"channel":"web","channel":"app"}})",
         "metadata.channel"},
    };
    for (const auto& tc : cases) {
        INFO("body: " << tc.body);
        auto r = c.postOrder(tc.body);
        INFO(r.describe());
        CHECK(r.status == 422);
        CHECK(isProblem(r.contentType()));
        CHECK(r.body.find("\"field\":\"" + tc.field + "\"") != std::string::npos);
    }
    // A payment, too.
    auto p = c.postPayment(R"({"order_id":"ord_01JDQ8M4Z3X7K2N9P5R6S8T0VW","amount":1,"amount":2,"currency":"EUR",)"
                           R"("method":"card","reference":"r"})");
    INFO(p.describe());
    CHECK(p.status == 422);
    CHECK(p.body.find("\"field\":\"amount\"") != std::string::npos);
    CHECK(orderCount(d) == 0);
}
