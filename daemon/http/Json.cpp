#include "http/Json.h"

#include "domain/Validation.h"
#include "http/Problem.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/JSONException.h>
#include <Poco/JSON/ParseHandler.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/PrintHandler.h>
#include <Poco/String.h>

#include <algorithm>
#include <optional>
#include <sstream>

namespace orderpay::http {
namespace {

std::string parseError(const std::string& text)
{
    try {
        Poco::JSON::Parser parser;
        parser.setDepth(32);
        parser.parse(text);
        return {};
    } catch (const Poco::Exception& e) {
        return e.message();
    }
}

/// Poco's parser says what is wrong but not where. The first bad byte is
/// found by parsing prefixes: the shortest prefix that fails the same way
/// as the whole body ends at the offending byte.
std::size_t errorOffset(const std::string& body, const std::string& error)
{
    if (error.find("unexpected end of text") != std::string::npos ||
        error.find("unterminated string") != std::string::npos || error.find('\xFF') != std::string::npos)
        return body.size();  // the body stops short (see readableError)
    std::size_t lo = 0, hi = body.size();  // prefix hi fails with `error`, prefix lo does not
    while (lo + 1 < hi) {
        const std::size_t mid = lo + (hi - lo) / 2;
        if (parseError(body.substr(0, mid)) == error) hi = mid;
        else lo = mid;
    }
    return hi == 0 ? 0 : hi - 1;
}

/// The parser names the byte it did not expect as is: the end of the text
/// as the byte 0xFF (never part of a body, which is valid UTF-8 by then), and
/// a lead or continuation byte alone, which is not text. Both are spelt out.
std::string readableError(const std::string& message)
{
    static const std::string kEnd = "byte '\xFF'";
    std::string out;
    for (std::size_t i = 0; i < message.size(); ++i) {
        const auto b = static_cast<unsigned char>(message[i]);
        if (message.compare(i, kEnd.size(), kEnd) == 0) {
            out += "the end of the body";
            i += kEnd.size() - 1;
        } else if (b >= 0x80) {
            static const char kHex[] = "0123456789ABCDEF";
            out += {'0', 'x', kHex[b >> 4], kHex[b & 0xF]};
        } else {
            out += message[i];
        }
    }
    return out;
}

/// Reads and drops what is left of a refused body, up to a bound, so the
/// client is not cut off (a TCP reset) before it can read the 413. Past the
/// bound the connection is simply closed; nothing is ever buffered.
void discardRest(std::istream& in)
{
    constexpr std::streamsize kMaxDiscard = 16 * 1024 * 1024;
    char buffer[16384];
    std::streamsize total = 0;
    while (total < kMaxDiscard && in.read(buffer, sizeof buffer)) total += in.gcount();
}

/// Poco's parser silently wraps integers just past 2^64 (18446744073709551617
/// comes out as 1), so a too-long digit run is refused before parsing. This
/// only skips strings and counts digits; the parsing stays Poco's.
std::size_t oversizedNumberAt(const std::string& body)
{
    bool inString = false;
    std::size_t run = 0;
    for (std::size_t i = 0; i < body.size(); ++i) {
        const char c = body[i];
        if (inString) {
            if (c == '\\') ++i;
            else if (c == '"') inString = false;
            continue;
        }
        if (c == '"') inString = true;
        if (c >= '0' && c <= '9') {
            // 20 digits may exceed 2^64; every value we accept has at most 13.
            if (++run >= 20) return i + 1 - run;
        } else {
            run = 0;
        }
    }
    return std::string::npos;
}

/// Poco's own handler, which builds the value, with a record of each
/// object's keys: a key given twice is found (the object would keep only
/// the last, and a proxy or a log reader may take the first).
class UniqueKeysHandler : public Poco::JSON::ParseHandler {
public:
    UniqueKeysHandler() : Poco::JSON::ParseHandler(false) {}

    /// The first repeated key, as a field path ("customer", "items[0].sku"), if any.
    const std::optional<std::string>& repeated() const { return repeated_; }

    void reset() override
    {
        ParseHandler::reset();
        frames_.clear();
        repeated_.reset();
    }
    void startObject() override
    {
        element();
        ParseHandler::startObject();
        frames_.push_back(Frame{true, {}, {}, 0, false});
    }
    void endObject() override
    {
        ParseHandler::endObject();
        frames_.pop_back();
    }
    void startArray() override
    {
        element();
        ParseHandler::startArray();
        frames_.push_back(Frame{false, {}, {}, 0, false});
    }
    void endArray() override
    {
        ParseHandler::endArray();
        frames_.pop_back();
    }
    void key(const std::string& k) override
    {
        Frame& top = frames_.back();
        // Objects of a request hold a few keys: a linear look beats a set's
        // allocation per key on this path.
        if (!repeated_ && std::find(top.keys.begin(), top.keys.end(), k) != top.keys.end()) repeated_ = pathTo(k);
        top.keys.push_back(k);
        top.key = k;
        ParseHandler::key(k);
    }
    void null() override { element(), ParseHandler::null(); }
    void value(int v) override { element(), ParseHandler::value(v); }
    void value(unsigned v) override { element(), ParseHandler::value(v); }
    void value(Poco::Int64 v) override { element(), ParseHandler::value(v); }
    void value(Poco::UInt64 v) override { element(), ParseHandler::value(v); }
    void value(const std::string& v) override { element(), ParseHandler::value(v); }
    void value(double v) override { element(), ParseHandler::value(v); }
    void value(bool v) override { element(), ParseHandler::value(v); }

private:
    struct Frame {
        bool object;
        std::vector<std::string> keys;  // an object's keys so far
        std::string key;             // an object's current key
        std::size_t index;           // an array's current element, once started
        bool started;                // an array's first element has come
    };

    /// A value (or a container) starts: in an array, it is the next element.
    void element()
    {
        if (frames_.empty() || frames_.back().object) return;
        Frame& array = frames_.back();
        if (array.started) ++array.index;
        array.started = true;
    }
    std::string pathTo(const std::string& k) const
    {
        std::string path;
        for (std::size_t i = 0; i + 1 < frames_.size(); ++i) {
            const Frame& f = frames_[i];
            if (f.object) path += (path.empty() ? "" : ".") + f.key;
            else path += "[" + std::to_string(f.index) + "]";
        }
        return path + (path.empty() ? "" : ".") + k;
    }

    std::vector<Frame> frames_;
    std::optional<std::string> repeated_;
};

}  // namespace

Poco::URI::QueryParameters queryParameters(const std::string& uri)
{
    try {
        return Poco::URI(uri).getQueryParameters();
    } catch (const Poco::Exception& e) {
        throw ProblemException(Problem::badRequest("the query string cannot be decoded: " + e.message()));
    }
}

std::string readBody(Poco::Net::HTTPServerRequest& request, std::size_t maxBytes)
{
    const std::string contentType = request.getContentType();
    const std::string mediaType = Poco::toLower(Poco::trim(contentType.substr(0, contentType.find(';'))));
    if (mediaType != "application/json") throw ProblemException(Problem::unsupportedMediaType(contentType));

    // Neither Content-Length nor chunked: the request has no body (RFC 9112);
    // Poco's stream would instead wait for the connection to close.
    if (!request.hasContentLength() && !request.getChunkedTransferEncoding()) return {};
    std::istream& in = request.stream();
    if (request.hasContentLength() && request.getContentLength64() > static_cast<Poco::Int64>(maxBytes)) {
        discardRest(in);
        throw ProblemException(Problem::payloadTooLarge(maxBytes));
    }
    // Read at most one byte past the limit, whatever the client claims.
    std::string body;
    body.resize(maxBytes + 1);
    in.read(body.data(), static_cast<std::streamsize>(body.size()));
    body.resize(static_cast<std::size_t>(in.gcount()));
    if (body.size() > maxBytes) {
        discardRest(in);
        throw ProblemException(Problem::payloadTooLarge(maxBytes));
    }
    if (request.hasContentLength() && static_cast<Poco::Int64>(body.size()) < request.getContentLength64()) {
        throw ProblemException(Problem::badRequest("the body ended after " + std::to_string(body.size()) +
                                                   " of the " + std::to_string(request.getContentLength64()) +
                                                   " bytes announced by Content-Length"));
    }
    return body;
}

Poco::Dynamic::Var parseJson(const std::string& body)
{
    if (const auto bad = utf8ErrorOffset(body); bad != std::string_view::npos) {
        throw ProblemException(
            Problem::malformedJson("the body is not valid UTF-8 (at byte offset " + std::to_string(bad) + ")"));
    }
    if (const auto at = oversizedNumberAt(body); at != std::string::npos) {
        throw ProblemException(Problem::validation(
            {{"", "the number at byte offset " + std::to_string(at) +
                      " is out of range: amounts and quantities are 64-bit integers"}}));
    }
    Poco::Dynamic::Var value;
    Poco::SharedPtr<UniqueKeysHandler> handler(new UniqueKeysHandler);
    try {
        Poco::JSON::Parser parser(handler);
        parser.setDepth(32);  // orders nest three deep; deeper is an attack or a bug
        value = parser.parse(body);
    } catch (const Poco::SyntaxException& e) {
        // Poco refuses numbers it cannot hold in 64 bits or a double.
        throw ProblemException(Problem::validation(
            {{"", "a number near byte offset " + std::to_string(errorOffset(body, e.message())) +
                      " is out of range: amounts and quantities are 64-bit integers"}}));
    } catch (const Poco::Exception& e) {
        const std::string what = body.empty() ? std::string("the body is empty") : readableError(e.message());
        throw ProblemException(
            Problem::malformedJson(what + " at byte offset " + std::to_string(errorOffset(body, e.message()))));
    }
    // Two readers of a body with a repeated key may each take another of
    // its values: refused, so every reader sees what was stored.
    if (const auto& key = handler->repeated())
        throw ProblemException(Problem::validation({{*key, "is given more than once; give each key once"}}));
    return value;
}

namespace {

// The answers are written straight to text by Poco's PrintHandler: building
// Poco::JSON::Object trees first (a map, a Var and a SharedPtr per field) and
// stringifying them cost as much CPU as parsing the request.
class Writer {
public:
    Writer() : out_(text_) {}
    std::string text() { return text_.str(); }

    void field(const std::string& key, const std::string& v) { out_.key(key); out_.value(v); }
    void field(const std::string& key, std::int64_t v) { out_.key(key); out_.value(static_cast<Poco::Int64>(v)); }
    void field(const std::string& key, const std::optional<std::string>& v)
    {
        out_.key(key);
        if (v) out_.value(*v);
        else out_.null();
    }
    void startObject(const std::string& key) { out_.key(key); out_.startObject(); }
    void startArray(const std::string& key) { out_.key(key); out_.startArray(); }
    Poco::JSON::PrintHandler& handler() { return out_; }

    void payment(const Payment& p)
    {
        out_.startObject();
        field("id", p.id);
        field("order_id", p.orderId);
        field("status", std::string(toString(p.status)));
        field("reason", p.reason);
        field("amount", p.amount);
        field("currency", p.currency);
        field("method", p.method);
        field("reference", p.reference);
        field("created_at", p.createdAt);
        field("updated_at", p.updatedAt);
        out_.endObject();
    }

    void order(const Order& order, bool withDetails)
    {
        out_.startObject();
        field("id", order.id);
        field("status", std::string(toString(order.status)));
        field("reason", order.reason);
        field("customer", order.customer);
        field("currency", order.currency);
        startArray("items");
        for (const auto& item : order.items) {
            out_.startObject();
            field("sku", item.sku);
            field("quantity", item.quantity);
            field("unit_amount", item.unitAmount);
            out_.endObject();
        }
        out_.endArray();
        field("total_amount", order.totalAmount);
        startObject("metadata");
        for (const auto& [k, v] : order.metadata) field(k, v);
        out_.endObject();
        field("created_at", order.createdAt);
        field("updated_at", order.updatedAt);
        if (withDetails) {
            startArray("payments");
            for (const auto& p : order.payments) payment(p);
            out_.endArray();
            startArray("events");
            for (const auto& e : order.events) {
                out_.startObject();
                field("at", e.at);
                field("type", e.type);
                for (const auto& [k, v] : e.fields) field(k, v);
                out_.endObject();
            }
            out_.endArray();
        }
        out_.endObject();
    }

private:
    std::ostringstream text_;
    Poco::JSON::PrintHandler out_;
};

}  // namespace

std::string paymentJson(const Payment& payment)
{
    Writer w;
    w.payment(payment);
    return w.text();
}

std::string orderJson(const Order& order, bool withDetails)
{
    Writer w;
    w.order(order, withDetails);
    return w.text();
}

std::string orderListJson(const std::vector<Order>& orders, const std::optional<std::string>& next)
{
    Writer w;
    w.handler().startObject();
    w.startArray("orders");
    for (const auto& o : orders) w.order(o, false);
    w.handler().endArray();
    w.field("next", next);
    w.handler().endObject();
    return w.text();
}

std::string toText(const Poco::JSON::Object::Ptr& object)
{
    std::ostringstream out;
    object->stringify(out);
    return out.str();
}

void sendJson(Poco::Net::HTTPServerResponse& response, int status, const std::string& body)
{
    response.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(status));
    response.setContentType("application/json");
    response.setContentLength(static_cast<std::streamsize>(body.size()));
    response.send() << body;
}

}  // namespace orderpay::http
