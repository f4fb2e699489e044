#include "http/RequestFraming.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPRequest.h>

#include <charconv>
#include <sstream>
#include <string>

namespace orderpay::http {
namespace {

constexpr std::string_view kCrlf = "\r\n";

/// Where a chunked body that starts at `at` ends; Unbounded when its chunk
/// data passes `maxBody` (or its framing, `rawLimit`) or a chunk size is not
/// a number.
Framing frameChunked(std::string_view received, std::size_t at, std::size_t maxBody, std::size_t rawLimit)
{
    // Still arriving: everything received belongs to this request, which is
    // not waited for past the raw limit (tiny chunks' framing).
    const Framing incomplete{received.size() >= rawLimit ? Framing::Kind::Unbounded : Framing::Kind::Incomplete};
    std::size_t data = 0;  // chunk bytes so far
    for (;;) {
        const std::size_t lineEnd = received.find(kCrlf, at);
        if (lineEnd == std::string_view::npos) return incomplete;
        std::string_view sizeText = received.substr(at, lineEnd - at);
        sizeText = sizeText.substr(0, sizeText.find(';'));  // chunk extensions
        while (!sizeText.empty() && (sizeText.back() == ' ' || sizeText.back() == '\t')) sizeText.remove_suffix(1);
        std::size_t size = 0;
        const auto [end, error] = std::from_chars(sizeText.data(), sizeText.data() + sizeText.size(), size, 16);
        if (sizeText.empty() || error != std::errc() || end != sizeText.data() + sizeText.size())
            return {Framing::Kind::Unbounded};  // Poco's chunked stream refuses it
        at = lineEnd + kCrlf.size();
        if (size == 0) break;
        if (size > maxBody || data + size > maxBody) {
            // Too large: wait only until more than maxBody bytes are there,
            // so the handler reads past the limit and answers 413.
            return data + (received.size() - at) > maxBody ? Framing{Framing::Kind::Unbounded} : incomplete;
        }
        data += size;
        if (received.size() < at + size + kCrlf.size()) return incomplete;
        if (received.substr(at + size, kCrlf.size()) != kCrlf) return {Framing::Kind::Unbounded};  // Poco refuses it
        at += size + kCrlf.size();
    }
    // The last chunk; then trailer lines up to an empty one.
    for (;;) {
        const std::size_t lineEnd = received.find(kCrlf, at);
        if (lineEnd == std::string_view::npos) return incomplete;
        const bool empty = lineEnd == at;
        at = lineEnd + kCrlf.size();
        if (empty) return {Framing::Kind::Whole, at};
    }
}

}  // namespace

std::size_t receiveLimit(std::size_t maxBody) { return kMaxRequestHead + 4 * maxBody; }

Framing frameRequest(std::string_view received, std::size_t maxBody)
{
    const std::size_t headEnd = received.substr(0, kMaxRequestHead).find("\r\n\r\n");
    if (headEnd == std::string_view::npos) {
        // Too large a head is not waited for: Poco refuses it.
        return received.size() >= kMaxRequestHead ? Framing{Framing::Kind::Unbounded} : Framing{};
    }
    const std::size_t bodyStart = headEnd + 4;
    Poco::Net::HTTPRequest head;
    try {
        std::istringstream in{std::string(received.substr(0, bodyStart))};
        head.read(in);
        if (head.getChunkedTransferEncoding()) {
            Framing f = frameChunked(received, bodyStart, maxBody, receiveLimit(maxBody));
            if (f.kind == Framing::Kind::Incomplete) f.expectContinue = head.getExpectContinue();
            return f;
        }
        if (!head.hasContentLength()) return {Framing::Kind::Whole, bodyStart};  // no body (RFC 9112)
        const Poco::Int64 length = head.getContentLength64();
        if (length < 0 || static_cast<std::uint64_t>(length) > maxBody) return {Framing::Kind::Unbounded};
        const std::size_t end = bodyStart + static_cast<std::size_t>(length);
        if (received.size() >= end) return {Framing::Kind::Whole, end};
        return {Framing::Kind::Incomplete, 0, head.getExpectContinue()};
    } catch (const Poco::Exception&) {
        return {Framing::Kind::Unbounded};  // a head Poco refuses: it answers 400
    }
}

}  // namespace orderpay::http
