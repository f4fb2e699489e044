#pragma once

#include "domain/Order.h"

#include <Poco/Dynamic/Var.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace orderpay {

/// One reason a request body was refused, named by its JSON path
/// (`items[0].quantity`), as a problem+json's `errors` lists them.
struct FieldError {
    std::string field;
    std::string message;
};

struct NewOrder {
    std::string customer;
    std::string currency;
    std::vector<OrderItem> items;
    std::int64_t totalAmount = 0;
    std::map<std::string, std::string> metadata;
};

struct NewPayment {
    std::string orderId;
    std::int64_t amount = 0;
    std::string currency;
    std::string method;
    std::string reference;
};

template <typename T>
struct Validated {
    std::optional<T> value;  // set when errors is empty
    std::vector<FieldError> errors;
};

/// Checks a parsed POST /orders body against every rule of the API (docs/api.md) and
/// computes the total. Collects all errors rather than stopping at the
/// first, so a client can fix a request in one round trip.
Validated<NewOrder> validateOrder(const Poco::Dynamic::Var& body, const std::string& defaultCurrency);

/// Checks a parsed POST /payment/confirm body (shape only; whether the
/// order exists is the store's question).
Validated<NewPayment> validatePayment(const Poco::Dynamic::Var& body);

/// Shared field rules, exposed for the query-string and header checks.
bool isCurrencyCode(const std::string& s);
bool isSku(const std::string& s);
/// Number of Unicode code points in valid UTF-8.
std::size_t utf8Length(const std::string& s);
/// True if `s` is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF).
bool isValidUtf8(std::string_view s);
/// Offset of the first byte that is not part of valid UTF-8, or npos.
std::size_t utf8ErrorOffset(std::string_view s);
/// `s` with each byte that is not part of valid UTF-8 replaced by U+FFFD,
/// for text that echoes what a client sent (a request target, a header).
std::string toValidUtf8(std::string_view s);
/// Idempotency-Key: 1-255 printable ASCII characters.
bool isIdempotencyKey(const std::string& s);

}  // namespace orderpay
