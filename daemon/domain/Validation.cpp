#include "domain/Validation.h"

#include "domain/Money.h"

#include <Poco/JSON/Object.h>

#include <algorithm>
#include <limits>
#include <set>

namespace orderpay {
namespace {

using Poco::Dynamic::Var;
using Poco::JSON::Object;

class Checker {
public:
    std::vector<FieldError> errors;

    void fail(std::string field, std::string message) { errors.push_back({std::move(field), std::move(message)}); }

    /// An integer in [lo, hi]; JSON numbers with a fraction or exponent,
    /// numbers past 64 bits, strings and booleans are all refused.
    std::optional<std::int64_t> integer(const Var& v, const std::string& field, std::int64_t lo, std::int64_t hi)
    {
        const std::string range = "must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
        if (v.isEmpty()) {
            fail(field, "is required");
            return std::nullopt;
        }
        if (v.isBoolean() || v.isString() || !v.isInteger()) {
            fail(field, range);
            return std::nullopt;
        }
        std::int64_t value = 0;
        try {
            if (v.isSigned()) {
                value = v.convert<Poco::Int64>();
            } else {
                const auto u = v.convert<Poco::UInt64>();
                if (u > static_cast<Poco::UInt64>(std::numeric_limits<std::int64_t>::max())) {
                    fail(field, range);
                    return std::nullopt;
                }
                value = static_cast<std::int64_t>(u);
            }
        } catch (const Poco::Exception&) {
            fail(field, range);
            return std::nullopt;
        }
        if (value < lo || value > hi) {
            fail(field, range);
            return std::nullopt;
        }
        return value;
    }

    /// A string of minChars..maxChars code points.
    std::optional<std::string> string(const Var& v, const std::string& field, std::size_t minChars,
                                      std::size_t maxChars)
    {
        if (v.isEmpty()) {
            fail(field, "is required");
            return std::nullopt;
        }
        if (!v.isString()) {
            fail(field, "must be a string");
            return std::nullopt;
        }
        std::string s = v.extract<std::string>();
        const std::size_t n = utf8Length(s);
        if (n < minChars || n > maxChars) {
            fail(field, "must be " + std::to_string(minChars) + " to " + std::to_string(maxChars) + " characters");
            return std::nullopt;
        }
        return s;
    }

    /// A currency code; `fallback` (if not empty) stands in for a missing one.
    std::optional<std::string> currency(const Var& v, const std::string& field, const std::string& fallback)
    {
        if (v.isEmpty()) {
            if (!fallback.empty()) return fallback;
            fail(field, "is required");
            return std::nullopt;
        }
        if (!v.isString() || !isCurrencyCode(v.extract<std::string>())) {
            fail(field, "must be three upper-case letters (ISO 4217)");
            return std::nullopt;
        }
        return v.extract<std::string>();
    }

    /// The body's top-level object, or nothing (and an error) if it is not one.
    const Object* object(const Var& body)
    {
        if (body.type() == typeid(Object::Ptr)) return body.extract<Object::Ptr>().get();
        fail("", "the body must be a JSON object");
        return nullptr;
    }

    void rejectUnknown(const Object& obj, const std::set<std::string>& known, const std::string& prefix)
    {
        for (const auto& [name, _] : obj) {
            if (!known.count(name)) fail(prefix + name, "is not a known field");
        }
    }
};

const Object* asObject(const Var& v)
{
    if (v.type() == typeid(Object::Ptr)) return v.extract<Object::Ptr>().get();
    return nullptr;
}

const Poco::JSON::Array* asArray(const Var& v)
{
    if (v.type() == typeid(Poco::JSON::Array::Ptr)) return v.extract<Poco::JSON::Array::Ptr>().get();
    return nullptr;
}

}  // namespace

bool isCurrencyCode(const std::string& s)
{
    return s.size() == 3 && std::all_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

bool isSku(const std::string& s)
{
    return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '_' || c == '-';
    });
}

std::size_t utf8Length(const std::string& s)
{
    return static_cast<std::size_t>(
        std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::size_t utf8ErrorOffset(std::string_view s)
{
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t extra = 0;
        std::uint32_t cp = 0;
        if (c >= 0xC2 && c <= 0xDF) {
            extra = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (i + extra >= s.size()) return i;
        for (std::size_t k = 1; k <= extra; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (cc & 0x3F);
        }
        // Overlong forms, UTF-16 surrogates and values past U+10FFFF.
        if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += extra + 1;
    }
    return std::string_view::npos;
}

bool isValidUtf8(std::string_view s) { return utf8ErrorOffset(s) == std::string_view::npos; }

std::string toValidUtf8(std::string_view s)
{
    std::string out;
    out.reserve(s.size());
    for (auto bad = utf8ErrorOffset(s); bad != std::string_view::npos; bad = utf8ErrorOffset(s)) {
        out.append(s.substr(0, bad));
        out.append("\xEF\xBF\xBD");  // U+FFFD REPLACEMENT CHARACTER
        s.remove_prefix(bad + 1);
    }
    out.append(s);
    return out;
}

bool isIdempotencyKey(const std::string& s)
{
    return !s.empty() && s.size() <= 255 &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c <= 0x7E; });
}

Validated<NewOrder> validateOrder(const Var& body, const std::string& defaultCurrency)
{
    Validated<NewOrder> result;
    Checker check;
    const Object* obj = check.object(body);
    if (!obj) {
        result.errors = std::move(check.errors);
        return result;
    }
    check.rejectUnknown(*obj, {"customer", "currency", "items", "metadata"}, "");

    NewOrder order;
    if (auto customer = check.string(obj->get("customer"), "customer", 1, 200)) order.customer = *customer;

    if (auto currency = check.currency(obj->get("currency"), "currency", defaultCurrency)) order.currency = *currency;

    const Var items = obj->get("items");
    const Poco::JSON::Array* array = asArray(items);
    if (items.isEmpty()) {
        check.fail("items", "is required");
    } else if (!array) {
        check.fail("items", "must be an array");
    } else if (array->size() < 1 || array->size() > 100) {
        check.fail("items", "must have 1 to 100 entries");
    } else {
        bool allValid = true;
        std::int64_t total = 0;
        for (std::size_t i = 0; i < array->size(); ++i) {
            const std::string at = "items[" + std::to_string(i) + "]";
            const Object* item = asObject(array->get(static_cast<unsigned>(i)));
            if (!item) {
                check.fail(at, "must be an object");
                allValid = false;
                continue;
            }
            check.rejectUnknown(*item, {"sku", "quantity", "unit_amount"}, at + ".");
            OrderItem parsed;
            const Var sku = item->get("sku");
            if (sku.isEmpty()) {
                check.fail(at + ".sku", "is required");
                allValid = false;
            } else if (!sku.isString() || !isSku(sku.extract<std::string>())) {
                check.fail(at + ".sku", "must be 1 to 64 characters of A-Z a-z 0-9 . _ -");
                allValid = false;
            } else {
                parsed.sku = sku.extract<std::string>();
            }
            const auto quantity = check.integer(item->get("quantity"), at + ".quantity", 1, 10000);
            const auto unit = check.integer(item->get("unit_amount"), at + ".unit_amount", 0, money::kMaxUnitAmount);
            if (!quantity || !unit) {
                allValid = false;
                continue;
            }
            parsed.quantity = *quantity;
            parsed.unitAmount = *unit;
            // Bounded by 10^4 * 10^9 * 100 = 10^15, but check anyway: the
            // limits are configuration of today, overflow is forever.
            const auto line = money::multiply(*quantity, *unit);
            const auto sum = line ? money::add(total, *line) : std::nullopt;
            if (!sum) {
                allValid = false;
                check.fail("items", "the order total does not fit in 64 bits");
                break;
            }
            total = *sum;
            order.items.push_back(std::move(parsed));
        }
        if (allValid && total > money::kMaxOrderTotal) {
            check.fail("items", "the order total (sum of quantity x unit_amount) must not exceed 1000000000000");
        }
        order.totalAmount = total;
    }

    const Var metadata = obj->get("metadata");
    if (!metadata.isEmpty()) {
        const Object* meta = asObject(metadata);
        if (!meta) {
            check.fail("metadata", "must be an object of string values");
        } else if (meta->size() > 20) {
            check.fail("metadata", "must have at most 20 keys");
        } else {
            for (const auto& [key, value] : *meta) {
                if (!value.isString()) {
                    check.fail("metadata." + key, "must be a string");
                } else if (key.empty() || key.size() > 64) {
                    check.fail("metadata", "keys must be 1 to 64 bytes");
                } else {
                    std::string s = value.extract<std::string>();
                    if (s.size() > 1024) {
                        check.fail("metadata." + key, "must be at most 1024 bytes");
                    } else {
                        order.metadata.emplace(key, std::move(s));
                    }
                }
            }
        }
    }

    result.errors = std::move(check.errors);
    if (result.errors.empty()) result.value = std::move(order);
    return result;
}

Validated<NewPayment> validatePayment(const Var& body)
{
    Validated<NewPayment> result;
    Checker check;
    const Object* obj = check.object(body);
    if (!obj) {
        result.errors = std::move(check.errors);
        return result;
    }
    check.rejectUnknown(*obj, {"order_id", "amount", "currency", "method", "reference"}, "");

    NewPayment payment;
    if (auto id = check.string(obj->get("order_id"), "order_id", 1, 64)) payment.orderId = *id;
    if (auto amount = check.integer(obj->get("amount"), "amount", 0, money::kMaxOrderTotal)) payment.amount = *amount;

    if (auto currency = check.currency(obj->get("currency"), "currency", "")) payment.currency = *currency;

    const Var method = obj->get("method");
    if (method.isEmpty()) {
        check.fail("method", "is required");
    } else if (!method.isString() || std::find(kPaymentMethods.begin(), kPaymentMethods.end(),
                                                method.extract<std::string>()) == kPaymentMethods.end()) {
        check.fail("method", "must be one of card, bank_transfer, wallet, cash");
    } else {
        payment.method = method.extract<std::string>();
    }

    if (auto reference = check.string(obj->get("reference"), "reference", 1, 128)) payment.reference = *reference;

    result.errors = std::move(check.errors);
    if (result.errors.empty()) result.value = std::move(payment);
    return result;
}

}  // namespace orderpay
