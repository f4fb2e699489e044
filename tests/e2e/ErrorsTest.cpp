// The error table of SPEC.md: every error is an RFC 9457 problem with the
// documented status and type; validation reports each failing field;
// authentication.
#include "Daemon.h"
#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <csignal>

#include <algorithm>
#include <regex>

using namespace e2e;

namespace {

bool contains(const std::vector<std::string>& v, const std::string& s)
{
    return std::find(v.begin(), v.end(), s) != v.end();
}

bool anyStartsWith(const std::vector<std::string>& v, const std::string& prefix)
{
    return std::any_of(v.begin(), v.end(), [&](const std::string& s) { return s.rfind(prefix, 0) == 0; });
}

std::string item(const std::string& sku, const std::string& quantity, const std::string& unitAmount)
{
    return R"({"sku":)" + sku + R"(,"quantity":)" + quantity + R"(,"unit_amount":)" + unitAmount + "}";
}

std::string order(const std::string& itemsJson, const std::string& extra = {})
{
    return R"({"customer":"v@example.com","currency":"EUR","items":[)" + itemsJson + "]" + extra + "}";
}

std::string repeatItems(int n)
{
    std::string s;
    for (int i = 0; i < n; ++i) {
        if (i) s += ',';
        s += item("\"S" + std::to_string(i) + "\"", "1", "1");
    }
    return s;
}

std::string metadataWith(int keys)
{
    std::string s = ",\"metadata\":{";
    for (int i = 0; i < keys; ++i) {
        if (i) s += ',';
        s += "\"k" + std::to_string(i) + "\":\"v\"";
    }
    return s + "}";
}

std::size_t orderCount(const HttpClient& c) { return c.listAllOrderIds().size(); }

} // namespace

TEST_CASE("Malformed JSON is a 400 problem naming the byte offset", "[errors]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    const std::regex number(R"(\d+)");
    for (const std::string& body : {std::string(R"({"customer": "a",)"),
                                   std::string(R"({"customer" "a"})"),
                                   std::string(R"({"customer": 'a'})"),
                                   std::string("{\"customer\": \"a\"} trailing"),
                                   std::string("not json at all"),
                                   std::string(R"({"items": [1, 2,]})")}) {
        INFO("body: " << body);
        auto r = c.postOrder(body);
        requireProblem(r, 400, "/problems/malformed-json");
        auto detail = getString(r.obj(), "detail").value_or("");
        CHECK(std::regex_search(detail, number));
    }
    // Offset of the error in a known spot: the body breaks at byte 13.
    auto r = c.postOrder(R"({"customer": x})");
    requireProblem(r, 400, "/problems/malformed-json");
    auto detail = getString(r.obj(), "detail").value_or("");
    INFO("detail: " << detail);
    CHECK(std::regex_search(detail, std::regex(R"(\b1[234]\b)")));
    CHECK(orderCount(c) == 0);
}

TEST_CASE("Unknown ids and unknown routes are 404 problems", "[errors]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    requireProblem(c.get("/orders/ord_01JDQ8M4Z3X7K2N9P5R6S8T0VW"), 404, "/problems/not-found");
    requireProblem(c.get("/orders/nonsense"), 404, "/problems/not-found");
    requireProblem(c.get("/payments/pay_01JDQ8M4Z3X7K2N9P5R6S8T0VW"), 404, "/problems/not-found");
    requireProblem(c.cancelOrder("ord_01JDQ8M4Z3X7K2N9P5R6S8T0VW"), 404, "/problems/not-found");
    requireProblem(c.get("/nope"), 404, "/problems/not-found");
    requireProblem(c.get("/index.html"), 404, "/problems/not-found");  // "/" is the status page
    requireProblem(c.get("/orders/ord_01JDQ8M4Z3X7K2N9P5R6S8T0VW/unknown"), 404, "/problems/not-found");
    requireProblem(c.post("/unknown", "{}"), 404, "/problems/not-found");
}

TEST_CASE("A wrong method is a 405 problem with Allow", "[errors]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    auto id = c.createOrder(orderJson("allow@example.com"));
    auto allowed = [](const Response& r) {
        std::string a = r.header("Allow");
        std::set<std::string> methods;
        std::regex token("[A-Z]+");
        for (auto it = std::sregex_iterator(a.begin(), a.end(), token); it != std::sregex_iterator(); ++it)
            methods.insert(it->str());
        return methods;
    };
    struct Case { std::string method, path; std::set<std::string> must; std::string forbidden; };
    const std::vector<Case> cases = {
        {"DELETE", "/orders", {"GET", "POST"}, "DELETE"},
        {"PUT", "/orders", {"GET", "POST"}, "PUT"},
        {"GET", "/payment/confirm", {"POST"}, "GET"},
        {"DELETE", "/orders/" + id, {"GET"}, "DELETE"},
        {"PUT", "/orders/" + id, {"GET"}, "PUT"},
        {"GET", "/orders/" + id + "/cancel", {"POST"}, "GET"},
        {"POST", "/health/live", {"GET"}, "POST"},
        {"POST", "/metrics", {"GET"}, "POST"},
    };
    for (const auto& tc : cases) {
        INFO(tc.method << " " << tc.path);
        auto r = c.request(tc.method, tc.path, tc.method == "GET" || tc.method == "DELETE" ? "" : "{}");
        requireProblem(r, 405, "/problems/method-not-allowed");
        REQUIRE(r.has("Allow"));
        auto a = allowed(r);
        INFO("Allow: " << r.header("Allow"));
        for (const auto& m : tc.must) CHECK(a.count(m) == 1);
        CHECK(a.count(tc.forbidden) == 0);
    }
    // The order is untouched.
    CHECK(c.getOrder(id).status == 200);
}

TEST_CASE("A state conflict is a 409 problem", "[errors]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    auto id = c.createOrder(orderJson("conflict@example.com"));
    c.waitForOrderStatus(id, "awaiting_payment");
    REQUIRE(c.cancelOrder(id).status == 200);
    requireProblem(c.cancelOrder(id), 409, "/problems/conflict");
    requireProblem(c.postPayment(paymentJson(id, 2500)), 409, "/problems/conflict");
}

TEST_CASE("A body over http.max_body_bytes is a 413 problem", "[errors]")
{
    SECTION("default limit of 64 KiB")
    {
        Daemon d({"orders.processing_ms=0"});
        HttpClient c(d.port());
        // Valid JSON, 70,000 bytes: refused for its size alone.
        std::string big = orderJson("big@example.com", {{"A", 1, 1}}, "EUR",
                                    {{"note", std::string(70000, 'x')}});
        requireProblem(c.postOrder(big), 413, "/problems/payload-too-large");
        // Just under the limit is not a 413 (it is a 422: the metadata value is
        // long, or a 202; either way not refused for size).
        std::string under = orderJson("under@example.com", {{"A", 1, 1}}, "EUR",
                                      {{"note", std::string(60000, 'x')}});
        auto u = c.postOrder(under);
        INFO(u.describe());
        CHECK(u.status != 413);
        CHECK(d.running());
        CHECK(c.get("/health/live").status == 200);
    }
    SECTION("a small configured limit, with Content-Length and chunked")
    {
        Daemon d({"orders.processing_ms=0", "http.max_body_bytes=1024"});
        HttpClient c(d.port());
        std::string big = orderJson("big@example.com", {{"A", 1, 1}}, "EUR",
                                    {{"note", std::string(2000, 'x')}});
        requireProblem(c.postOrder(big), 413, "/problems/payload-too-large");
        requireProblem(c.requestChunked("POST", "/orders", big), 413, "/problems/payload-too-large");
        requireProblem(c.postPayment("{\"order_id\":\"" + std::string(2000, 'o') + "\"}"), 413,
                       "/problems/payload-too-large");
        std::string small = orderJson("small@example.com", {{"A", 1, 1}}, "EUR",
                                      {{"note", std::string(500, 'x')}});
        auto ok = c.postOrder(small);
        INFO(ok.describe());
        CHECK(ok.status == 202);
        auto okChunked = c.requestChunked("POST", "/orders", small);
        INFO(okChunked.describe());
        CHECK(okChunked.status == 202);
        CHECK(orderCount(c) == 2);
    }
}

TEST_CASE("A body that is not application/json is a 415 problem", "[errors]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    const std::string body = orderJson("media@example.com");
    requireProblem(c.postOrder(body, {{"Content-Type", "text/plain"}}), 415, "/problems/unsupported-media-type");
    requireProblem(c.postOrder(body, {{"Content-Type", "application/x-www-form-urlencoded"}}), 415,
                   "/problems/unsupported-media-type");
    requireProblem(c.postOrder(body, {{"Content-Type", kOmitHeader}}), 415, "/problems/unsupported-media-type");
    requireProblem(c.postPayment(paymentJson("ord_x", 1), {{"Content-Type", "text/plain"}}), 415,
                   "/problems/unsupported-media-type");
    CHECK(orderCount(c) == 0);
    // application/json with parameters, in any case, is accepted.
    auto ok = c.postOrder(body, {{"Content-Type", "application/json; charset=utf-8"}});
    INFO(ok.describe());
    CHECK(ok.status == 202);
    auto ok2 = c.postOrder(body, {{"Content-Type", "Application/JSON"}});
    INFO(ok2.describe());
    CHECK(ok2.status == 202);
}

TEST_CASE("Each order validation rule is a 422 problem naming the field", "[errors][validation]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    const std::string okItem = item("\"BOOK-42\"", "2", "1250");

    struct Case { std::string name, body, field; bool prefix = false; };
    const std::vector<Case> cases = {
        {"customer missing", R"({"items":[)" + okItem + "]}", "customer"},
        {"customer empty", R"({"customer":"","items":[)" + okItem + "]}", "customer"},
        {"customer 201 chars", R"({"customer":")" + std::string(201, 'c') + R"(","items":[)" + okItem + "]}", "customer"},
        {"customer not a string", R"({"customer":42,"items":[)" + okItem + "]}", "customer"},
        {"customer null", R"({"customer":null,"items":[)" + okItem + "]}", "customer"},
        {"currency lower case", R"({"customer":"a","currency":"eur","items":[)" + okItem + "]}", "currency"},
        {"currency four letters", R"({"customer":"a","currency":"EURO","items":[)" + okItem + "]}", "currency"},
        {"currency not a string", R"({"customer":"a","currency":978,"items":[)" + okItem + "]}", "currency"},
        {"items missing", R"({"customer":"a"})", "items"},
        {"items empty", order(""), "items"},
        {"items not an array", R"({"customer":"a","items":{}})", "items"},
        {"101 items", order(repeatItems(101)), "items"},
        {"sku with a space", order(item("\"BAD SKU\"", "1", "1")), "items[0].sku"},
        {"sku with a slash", order(item("\"a/b\"", "1", "1")), "items[0].sku"},
        {"sku empty", order(item("\"\"", "1", "1")), "items[0].sku"},
        {"sku 65 chars", order(item("\"" + std::string(65, 's') + "\"", "1", "1")), "items[0].sku"},
        {"sku missing", order(R"({"quantity":1,"unit_amount":1})"), "items[0].sku"},
        {"quantity 0", order(item("\"A\"", "0", "1")), "items[0].quantity"},
        {"quantity negative", order(item("\"A\"", "-1", "1")), "items[0].quantity"},
        {"quantity 10001", order(item("\"A\"", "10001", "1")), "items[0].quantity"},
        {"quantity 1.5", order(item("\"A\"", "1.5", "1")), "items[0].quantity"},
        {"quantity string", order(item("\"A\"", "\"2\"", "1")), "items[0].quantity"},
        {"quantity missing", order(R"({"sku":"A","unit_amount":1})"), "items[0].quantity"},
        {"second item quantity 0", order(okItem + "," + item("\"B\"", "0", "1")), "items[1].quantity"},
        {"unit_amount negative", order(item("\"A\"", "1", "-1")), "items[0].unit_amount"},
        {"unit_amount over 1e9", order(item("\"A\"", "1", "1000000001")), "items[0].unit_amount"},
        {"unit_amount float", order(item("\"A\"", "1", "12.5")), "items[0].unit_amount"},
        {"unit_amount missing", order(R"({"sku":"A","quantity":1})"), "items[0].unit_amount"},
        {"total over 1e12", order(item("\"A\"", "10000", "1000000000")), "items"},
        {"total over 1e12 across items", order(item("\"A\"", "600", "1000000000") + "," + item("\"B\"", "401", "1000000000")), "items"},
        {"metadata value not a string", order(okItem, R"(,"metadata":{"a":1})"), "metadata", true},
        {"metadata nested object", order(okItem, R"(,"metadata":{"a":{"b":"c"}})"), "metadata", true},
        {"metadata not an object", order(okItem, R"(,"metadata":"x")"), "metadata", true},
        {"metadata 21 keys", order(okItem, metadataWith(21)), "metadata", true},
        {"unknown top-level field", order(okItem, R"(,"custmer":"typo")"), "custmer"},
        {"body is an array", "[]", "", true},
    };
    for (const auto& tc : cases) {
        INFO("case: " << tc.name << "; body: " << tc.body.substr(0, 300));
        auto r = c.postOrder(tc.body);
        requireProblem(r, 422, "/problems/validation");
        auto fields = errorFields(r);
        INFO("fields reported: " << Catch::Detail::stringify(fields));
        CHECK(!fields.empty());
        if (tc.prefix)
            CHECK(anyStartsWith(fields, tc.field));
        else
            CHECK(contains(fields, tc.field));
    }
    // A top-level scalar is valid JSON (RFC 8259) but no order: 422, or 400
    // from a parser that only takes objects and arrays.
    for (const char* scalar : {"\"order\"", "42", "null", "true"}) {
        INFO("body: " << scalar);
        auto r = c.postOrder(scalar);
        INFO(r.describe());
        CHECK((r.status == 422 || r.status == 400));
        CHECK(r.contentType().rfind("application/problem+json", 0) == 0);
    }
    CHECK(orderCount(c) == 0);

    // The limits themselves are valid.
    const std::vector<std::pair<std::string, std::string>> valid = {
        {"customer 200 chars", R"({"customer":")" + std::string(200, 'c') + R"(","items":[)" + okItem + "]}"},
        {"100 items", order(repeatItems(100))},
        {"sku 64 chars of every allowed kind", order(item("\"" + std::string(59, 'a') + "Z9._-\"", "1", "1"))},
        {"quantity 10000", order(item("\"A\"", "10000", "1"))},
        {"unit_amount 1e9", order(item("\"A\"", "1", "1000000000"))},
        {"total exactly 1e12", order(item("\"A\"", "1000", "1000000000"))},
        {"unit_amount 0", order(item("\"A\"", "1", "0"))},
        {"metadata 20 keys", order(okItem, metadataWith(20))},
        {"empty metadata", order(okItem, R"(,"metadata":{})")},
    };
    for (const auto& [name, body] : valid) {
        INFO("valid case: " << name);
        auto r = c.postOrder(body);
        INFO(r.describe());
        CHECK(r.status == 202);
    }
}

TEST_CASE("A 422 reports every failing field, not just the first", "[errors][validation]")
{
    Daemon d({"orders.processing_ms=0"});
    HttpClient c(d.port());
    auto r = c.postOrder(R"({"currency":"eur","items":[{"sku":"A","quantity":0,"unit_amount":-5}]})");
    requireProblem(r, 422, "/problems/validation");
    auto fields = errorFields(r);
    INFO("fields reported: " << Catch::Detail::stringify(fields));
    CHECK(contains(fields, "customer"));
    CHECK(contains(fields, "currency"));
    CHECK(contains(fields, "items[0].quantity"));
    CHECK(contains(fields, "items[0].unit_amount"));
}

TEST_CASE("With a token file every route but health and metrics requires the bearer token", "[errors][auth]")
{
    TempDir secrets;
    auto tokenFile = secrets.write("tokens", "s3cr3t-token-one\nsecond-token-two\n", 0600);
    // At the most verbose logging level, so the log check below sees every line.
    Daemon d({"orders.processing_ms=0", "http.auth.token_file=" + tokenFile, "logging.level=trace"});
    HttpClient anon(d.port());
    HttpClient authed(d.port(), "s3cr3t-token-one");
    const std::string body = orderJson("auth@example.com");

    auto none = anon.postOrder(body);
    requireProblem(none, 401, "/problems/unauthorized");
    CHECK(none.has("WWW-Authenticate"));
    for (const std::string& value : {std::string("Bearer wrong"), std::string("Bearer "),
                                     std::string("Bearer s3cr3t-token-on"),
                                     std::string("Bearer s3cr3t-token-onex"),
                                     std::string("Basic czNjcjN0LXRva2VuLW9uZQ=="),
                                     std::string("s3cr3t-token-one")}) {
        INFO("Authorization: " << value);
        requireProblem(anon.postOrder(body, {{"Authorization", value}}), 401, "/problems/unauthorized");
    }
    CHECK(authed.listAllOrderIds().empty());

    auto id = authed.createOrder(body);
    auto second = anon.postOrder(body, {{"Authorization", "Bearer second-token-two"}});
    INFO(second.describe());
    CHECK(second.status == 202);

    requireProblem(anon.getOrder(id), 401, "/problems/unauthorized");
    requireProblem(anon.get("/orders"), 401, "/problems/unauthorized");
    requireProblem(anon.cancelOrder(id), 401, "/problems/unauthorized");
    requireProblem(anon.postPayment(paymentJson(id, 2500)), 401, "/problems/unauthorized");
    CHECK(authed.getOrder(id).status == 200);

    for (const char* open : {"/health/live", "/health/ready", "/metrics"}) {
        INFO(open);
        CHECK(anon.get(open).status == 200);
    }
    CHECK(authed.listAllOrderIds().size() == 2);

    // Neither the tokens nor the wrong guesses reach the log, also not after
    // a reload re-reads the file.
    d.signal(SIGHUP);
    CHECK(eventually([&] { return d.log().find("reload") != std::string::npos; }, 10s));
    CHECK(authed.getOrder(id).status == 200);
    const auto log = d.log();
    CHECK(!log.empty());
    for (const char* secret : {"s3cr3t-token", "second-token-two", "czNjcjN0LXRva2VuLW9uZQ", "Bearer"}) {
        INFO("found in the log: " << secret);
        CHECK(log.find(secret) == std::string::npos);
    }
}

TEST_CASE("Binding a non-loopback address without a token file is refused", "[errors][auth]")
{
    SECTION("refused without allow_unauthenticated")
    {
        Daemon d({"http.host=0.0.0.0"}, Daemon::Wait::No);
        auto code = d.waitExit(15s);
        INFO("log: " << d.logTail());
        REQUIRE(code.has_value());
        CHECK(*code != 0);
        auto log = d.log();
        std::transform(log.begin(), log.end(), log.begin(), ::tolower);
        CHECK((log.find("token") != std::string::npos || log.find("allow_unauthenticated") != std::string::npos));
    }
    SECTION("allowed with http.allow_unauthenticated=true")
    {
        Daemon d({"http.host=0.0.0.0", "http.allow_unauthenticated=true", "orders.processing_ms=0"});
        HttpClient c(d.port());
        CHECK(c.get("/health/live").status == 200);
        CHECK(c.postOrder(orderJson("open@example.com")).status == 202);
    }
    SECTION("allowed with a token file")
    {
        TempDir secrets;
        auto tokenFile = secrets.write("tokens", "tok-0.0.0.0\n", 0600);
        Daemon d({"http.host=0.0.0.0", "http.auth.token_file=" + tokenFile});
        HttpClient c(d.port(), "tok-0.0.0.0");
        CHECK(c.postOrder(orderJson("tok@example.com")).status == 202);
        CHECK(HttpClient(d.port()).postOrder(orderJson("tok@example.com")).status == 401);
    }
}
