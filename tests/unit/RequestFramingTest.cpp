#include "http/RequestFraming.h"

#include <catch2/catch.hpp>

#include <string>

using orderpay::http::Framing;
using orderpay::http::frameRequest;
using orderpay::http::kMaxRequestHead;
using orderpay::http::receiveLimit;

namespace {

constexpr std::size_t kMaxBody = 1024;

std::string post(const std::string& body, const std::string& extra = "")
{
    return "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string chunkedHead(const std::string& extra = "")
{
    return "POST /orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + extra + "\r\n";
}

}  // namespace

TEST_CASE("A request is whole once its head and its Content-Length of body are there", "[http][framing]")
{
    const std::string request = post(R"({"customer":"a@b.c"})");
    for (std::size_t cut = 0; cut < request.size(); ++cut) {
        INFO("first " << cut << " bytes");
        CHECK(frameRequest(request.substr(0, cut), kMaxBody).kind == Framing::Kind::Incomplete);
    }
    const Framing whole = frameRequest(request, kMaxBody);
    CHECK(whole.kind == Framing::Kind::Whole);
    CHECK(whole.end == request.size());
}

TEST_CASE("Of pipelined requests only the first is framed", "[http][framing]")
{
    const std::string get = "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n";
    const std::string second = post("{}");
    Framing f = frameRequest(get + second, kMaxBody);
    CHECK(f.kind == Framing::Kind::Whole);
    CHECK(f.end == get.size());  // a request without Content-Length or chunks has no body
    f = frameRequest(second + get.substr(0, 5), kMaxBody);
    CHECK(f.kind == Framing::Kind::Whole);
    CHECK(f.end == second.size());
}

TEST_CASE("A head that asks for 100 Continue says so while its body is missing", "[http][framing]")
{
    const std::string request = post("{\"a\":1}", "Expect: 100-continue\r\n");
    const std::size_t head = request.find("\r\n\r\n") + 4;
    const Framing waiting = frameRequest(request.substr(0, head), kMaxBody);
    CHECK(waiting.kind == Framing::Kind::Incomplete);
    CHECK(waiting.expectContinue);
    CHECK_FALSE(frameRequest(post("{\"a\":1}").substr(0, head - 24), kMaxBody).expectContinue);
    CHECK(frameRequest(request, kMaxBody).kind == Framing::Kind::Whole);
}

TEST_CASE("A body announced larger than http.max_body_bytes is not waited for", "[http][framing]")
{
    const std::string head = "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(kMaxBody + 1) + "\r\n\r\n";
    CHECK(frameRequest(head, kMaxBody).kind == Framing::Kind::Unbounded);
    CHECK(frameRequest(post(std::string(kMaxBody, 'x')), kMaxBody).kind == Framing::Kind::Whole);
}

TEST_CASE("A chunked body is whole after its last chunk and trailers", "[http][framing]")
{
    const std::string body = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
    const std::string request = chunkedHead() + body;
    for (std::size_t cut = 0; cut < request.size(); ++cut) {
        INFO("first " << cut << " bytes");
        CHECK(frameRequest(request.substr(0, cut), kMaxBody).kind == Framing::Kind::Incomplete);
    }
    Framing f = frameRequest(request + "GET / HTTP/1.1\r\n", kMaxBody);
    CHECK(f.kind == Framing::Kind::Whole);
    CHECK(f.end == request.size());
    // However much is pipelined behind it.
    std::string behind;
    while (behind.size() < receiveLimit(kMaxBody)) behind += "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n";
    f = frameRequest(request + behind, kMaxBody);
    CHECK(f.kind == Framing::Kind::Whole);
    CHECK(f.end == request.size());

    const std::string trailed = chunkedHead() + "2\r\nab\r\n0\r\nX-Check: 1\r\n\r\n";
    CHECK(frameRequest(trailed.substr(0, trailed.size() - 2), kMaxBody).kind == Framing::Kind::Incomplete);
    f = frameRequest(trailed, kMaxBody);
    CHECK(f.kind == Framing::Kind::Whole);
    CHECK(f.end == trailed.size());

    const Framing continued = frameRequest(chunkedHead("Expect: 100-continue\r\n"), kMaxBody);
    CHECK(continued.kind == Framing::Kind::Incomplete);
    CHECK(continued.expectContinue);
}

TEST_CASE("A chunk size that takes the body past http.max_body_bytes is refused at once", "[http][framing]")
{
    // Answered 413 as soon as the size is read, without waiting for the chunk.
    const std::string chunk = "200\r\n" + std::string(0x200, 'x') + "\r\n";  // 512 bytes each
    std::string request = chunkedHead() + chunk + chunk;                    // exactly the limit
    CHECK(frameRequest(request, kMaxBody).kind == Framing::Kind::Incomplete);
    CHECK(frameRequest(request + "1\r\n", kMaxBody).kind == Framing::Kind::TooLarge);
    CHECK(frameRequest(chunkedHead() + "100000\r\n", kMaxBody).kind == Framing::Kind::TooLarge);
    CHECK(frameRequest(chunkedHead() + "ffffffffffffffff\r\n", kMaxBody).kind == Framing::Kind::TooLarge);
    CHECK(frameRequest(chunkedHead() + "10000000000000000\r\n", kMaxBody).kind == Framing::Kind::TooLarge);  // past 64 bits
}

TEST_CASE("A body whose end can be read two ways is refused as ambiguous", "[http][framing][smuggling]")
{
    const std::string post = "POST /orders HTTP/1.1\r\nHost: x\r\n";
    auto framed = [&](const std::string& headers) { return frameRequest(post + headers + "\r\n0\r\n\r\n", kMaxBody); };
    for (const std::string& headers : {
             std::string("Content-Length: 5\r\nContent-Length: 6\r\n"),
             std::string("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
             std::string("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
             std::string("Transfer-Encoding: gzip\r\n"),
             std::string("Transfer-Encoding: gzip, chunked\r\n"),
             std::string("Transfer-Encoding: chunked, gzip\r\n"),
             std::string("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
             std::string("Content-Length: +5\r\n"),
             std::string("Content-Length: 5, 5\r\n"),
             std::string("Content-Length: -5\r\n"),
             std::string("Content-Length: many\r\n"),
         }) {
        INFO(headers);
        const Framing f = framed(headers);
        CHECK(f.kind == Framing::Kind::Ambiguous);
        CHECK_FALSE(f.why.empty());
    }
    // The same length twice is one length; chunked in any case is chunked.
    CHECK(framed("Content-Length: 5\r\ncontent-length: 5\r\n").kind == Framing::Kind::Whole);
    CHECK(framed("Transfer-Encoding: Chunked\r\n").kind == Framing::Kind::Whole);
}

TEST_CASE("Heads Poco refuses and chunk sizes that are no number are handed over as they are", "[http][framing]")
{
    CHECK(frameRequest(chunkedHead() + "zz\r\n", kMaxBody).kind == Framing::Kind::Unbounded);
    CHECK(frameRequest(chunkedHead() + "2\r\nabXY0\r\n\r\n", kMaxBody).kind == Framing::Kind::Unbounded);  // no CRLF after the data
    CHECK(frameRequest(chunkedHead() + "\r\n", kMaxBody).kind == Framing::Kind::Unbounded);
    CHECK(frameRequest(std::string(kMaxRequestHead, 'a'), kMaxBody).kind == Framing::Kind::Unbounded);
    CHECK(frameRequest(std::string(kMaxRequestHead - 1, 'a'), kMaxBody).kind == Framing::Kind::Incomplete);
    // A head whose end lies past the limit is not looked for there.
    CHECK(frameRequest("GET / HTTP/1.1\r\nX: " + std::string(kMaxRequestHead, 'a') + "\r\n\r\n", kMaxBody).kind ==
          Framing::Kind::Unbounded);
}

TEST_CASE("Below the receive limit every request is either whole or waited for", "[http][framing]")
{
    // The server stops reading a connection at the limit: a request it
    // would still wait for there would never arrive.
    const std::size_t limit = receiveLimit(kMaxBody);
    const std::string tiny = "1\r\nx\r\n";  // 6 bytes on the wire for each byte of body
    std::string request = chunkedHead();
    while (request.size() < limit) request += tiny;
    CHECK(frameRequest(request.substr(0, limit), kMaxBody).kind != Framing::Kind::Incomplete);
    // The largest request waited for: a head just under its limit, a whole body.
    std::string pad;
    for (int i = 0; pad.size() < kMaxRequestHead - 1000; ++i) pad += "X-Pad-" + std::to_string(i) + ": " + std::string(760, 'p') + "\r\n";
    const std::string largest = post(std::string(kMaxBody, 'x'), pad);
    REQUIRE(largest.find("\r\n\r\n") > kMaxRequestHead - 1000);
    CHECK(largest.size() < limit);
    CHECK(frameRequest(largest, kMaxBody).kind == Framing::Kind::Whole);
}
