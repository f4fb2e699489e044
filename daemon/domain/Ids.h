#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace orderpay::ids {

/// A ULID: 48 bits of Unix milliseconds then 80 random bits, as 26
/// Crockford base32 characters. Ids made by one process are strictly
/// increasing (the random part is incremented within a millisecond), and
/// 80 random bits keep ids of different daemons apart.
std::string ulid();
/// Monotonic: a time at or before the last one used continues from it.
std::string ulid(std::uint64_t unixMillis);
/// The plain encoding of 48 time bits and 80 random bits.
std::string encodeUlid(std::uint64_t unixMillis, const std::array<std::uint8_t, 10>& random);

std::string newOrderId();    // "ord_" + ULID
std::string newPaymentId();  // "pay_" + ULID

/// True if `id` has the shape prefix + ULID (no lookup).
bool isValid(std::string_view id, std::string_view prefix);

}  // namespace orderpay::ids
