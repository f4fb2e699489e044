#include "domain/Ids.h"

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include <sys/random.h>

namespace orderpay::ids {
namespace {

constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

struct Generator {
    std::mutex mutex;
    std::uint64_t lastMillis = 0;
    std::array<std::uint8_t, 10> lastRandom{};
};

/// 80 fresh bits from the kernel's random source for each new millisecond:
/// no state of this process (a seed, a generator copied by fork) decides
/// them, so daemons on any number of machines make ids apart.
void fillRandom(std::array<std::uint8_t, 10>& bytes)
{
    std::size_t got = 0;
    while (got < bytes.size()) {
        const ssize_t n = ::getrandom(bytes.data() + got, bytes.size() - got, 0);
        if (n > 0) got += static_cast<std::size_t>(n);
        else if (n < 0 && errno != EINTR) throw std::runtime_error(std::string("getrandom: ") + std::strerror(errno));
    }
}

Generator& generator()
{
    static Generator g;
    return g;
}

}  // namespace

std::string encodeUlid(std::uint64_t millis, const std::array<std::uint8_t, 10>& random)
{
    // 128 bits: 48 of time then 80 of randomness, written 5 bits at a time
    // from the most significant end (26 characters, the first holds 3 bits).
    std::array<std::uint8_t, 16> bytes{};
    for (int i = 0; i < 6; ++i) bytes[i] = static_cast<std::uint8_t>(millis >> (8 * (5 - i)));
    for (int i = 0; i < 10; ++i) bytes[6 + i] = random[i];
    std::string out(26, '0');
    for (int c = 0; c < 26; ++c) {
        const int bit = 128 - 5 * (26 - c);  // first bit of this character; negative for c == 0
        int value = 0;
        for (int b = 0; b < 5; ++b) {
            const int pos = bit + b;
            if (pos < 0) continue;
            const int set = (bytes[pos / 8] >> (7 - pos % 8)) & 1;
            value = (value << 1) | set;
        }
        out[c] = kAlphabet[value];
    }
    return out;
}

std::string ulid(std::uint64_t unixMillis)
{
    Generator& g = generator();
    std::lock_guard lock(g.mutex);
    if (unixMillis <= g.lastMillis) {
        // Same (or earlier: clock stepped back) millisecond: keep order by
        // incrementing the previous random part.
        unixMillis = g.lastMillis;
        for (int i = 9; i >= 0; --i) {
            if (++g.lastRandom[i] != 0) break;
        }
    } else {
        fillRandom(g.lastRandom);
        g.lastMillis = unixMillis;
        g.lastRandom[0] &= 0x7f;  // leave room to increment within a millisecond
    }
    return encodeUlid(unixMillis, g.lastRandom);
}

std::string ulid()
{
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    return ulid(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(now).count()));
}

std::string newOrderId() { return "ord_" + ulid(); }
std::string newPaymentId() { return "pay_" + ulid(); }

bool isValid(std::string_view id, std::string_view prefix)
{
    if (id.size() != prefix.size() + 26 || id.substr(0, prefix.size()) != prefix) return false;
    const std::string_view body = id.substr(prefix.size());
    if (body[0] > '7') return false;  // 128 bits: the first character holds only 3
    for (char c : body) {
        if (std::string_view(kAlphabet).find(c) == std::string_view::npos) return false;
    }
    return true;
}

}  // namespace orderpay::ids
