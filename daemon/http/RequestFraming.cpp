#include "http/RequestFraming.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPRequest.h>

#include <Poco/String.h>

#include <charconv>
#include <optional>
#include <sstream>
#include <string>

namespace orderpay::http {
namespace {

constexpr std::string_view kCrlf = "\r\n";

Framing ambiguous(std::string why) { return Framing{Framing::Kind::Ambiguous, 0, false, std::move(why)}; }

std::string trimmed(const std::string& value)
{
    const auto first = value.find_first_not_of(" \t");
    if (first == std::string::npos) return {};
    return value.substr(first, value.find_last_not_of(" \t") - first + 1);
}

/// The body's framing headers, checked: at most one Content-Length value
/// (repeats of the same value are one), made of digits only; a
/// Transfer-Encoding only as "chunked", once, and never beside a
/// Content-Length. A request that breaks one of these can be read two ways.
std::optional<Framing> checkFraming(const Poco::Net::HTTPRequest& head)
{
    std::optional<std::string> length;
    int encodings = 0;
    std::string encoding;
    for (const auto& [name, value] : head) {
        if (Poco::icompare(name, "Content-Length") == 0) {
            const std::string v = trimmed(value);
            if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos)
                return ambiguous("Content-Length '" + v.substr(0, 40) + "' is not a number of bytes");
            if (length && *length != v) return ambiguous("two Content-Length headers with different values");
            length = v;
        } else if (Poco::icompare(name, "Transfer-Encoding") == 0) {
            ++encodings;
            encoding = trimmed(value);
        }
    }
    if (encodings == 0) return std::nullopt;
    if (encodings > 1 || Poco::icompare(encoding, "chunked") != 0)
        return ambiguous("Transfer-Encoding must be chunked alone (no other coding is supported)");
    if (length) return ambiguous("both Transfer-Encoding and Content-Length");
    return std::nullopt;
}

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
        if (error == std::errc::result_out_of_range) return {Framing::Kind::TooLarge};
        if (sizeText.empty() || error != std::errc() || end != sizeText.data() + sizeText.size())
            return {Framing::Kind::Unbounded};  // Poco's chunked stream refuses it
        at = lineEnd + kCrlf.size();
        if (size == 0) break;
        // Past the limit: refused at once, not waited for.
        if (size > maxBody || data + size > maxBody) return {Framing::Kind::TooLarge};
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
        if (auto refused = checkFraming(head)) return *refused;
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
