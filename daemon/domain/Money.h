#pragma once

#include <cstdint>
#include <optional>

namespace orderpay {

/// Money is an integer number of minor units (cents) everywhere; these
/// helpers refuse to overflow instead of wrapping.
namespace money {

inline constexpr std::int64_t kMaxUnitAmount = 1'000'000'000;      // 10^9
inline constexpr std::int64_t kMaxOrderTotal = 1'000'000'000'000;  // 10^12

/// a * b, or nothing if it does not fit in 64 bits.
std::optional<std::int64_t> multiply(std::int64_t a, std::int64_t b);

/// a + b, or nothing if it does not fit in 64 bits.
std::optional<std::int64_t> add(std::int64_t a, std::int64_t b);

}  // namespace money
}  // namespace orderpay
