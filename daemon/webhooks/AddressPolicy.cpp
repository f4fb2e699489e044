#include "webhooks/AddressPolicy.h"

#include <Poco/Exception.h>
#include <Poco/String.h>
#include <Poco/URI.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>

namespace orderpay::webhooks {
namespace {

bool isPublicV4(std::uint32_t a)  // host byte order
{
    struct Range {
        std::uint32_t base;
        int bits;
    };
    static constexpr std::array<Range, 11> kNotPublic{{
        {0x00000000, 8},   // "this network"
        {0x0A000000, 8},   // private
        {0x64400000, 10},  // carrier-grade NAT
        {0x7F000000, 8},   // loopback
        {0xA9FE0000, 16},  // link-local (cloud metadata services live here)
        {0xAC100000, 12},  // private
        {0xC0000000, 24},  // IETF protocol assignments
        {0xC0A80000, 16},  // private
        {0xC6120000, 15},  // benchmarking
        {0xE0000000, 4},   // multicast
        {0xF0000000, 4},   // reserved, broadcast
    }};
    for (const auto& r : kNotPublic) {
        const std::uint32_t mask = r.bits == 0 ? 0 : ~std::uint32_t{0} << (32 - r.bits);
        if ((a & mask) == r.base) return false;
    }
    return true;
}

bool isPublicV6(const std::uint8_t* b)
{
    static constexpr std::uint8_t kZero[16] = {};
    if (std::memcmp(b, kZero, 15) == 0 && (b[15] == 0 || b[15] == 1)) return false;  // :: and ::1
    if ((b[0] & 0xFE) == 0xFC) return false;                                          // unique local
    if (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) return false;                          // link-local
    if (b[0] == 0xFE && (b[1] & 0xC0) == 0xC0) return false;                          // site-local
    if (b[0] == 0xFF) return false;                                                   // multicast
    auto v4 = [&] { return (std::uint32_t{b[12]} << 24) | (b[13] << 16) | (b[14] << 8) | b[15]; };
    static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    if (std::memcmp(b, kMapped, 12) == 0) return isPublicV4(v4());
    static constexpr std::uint8_t kNat64[12] = {0, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0};
    if (std::memcmp(b, kNat64, 12) == 0) return isPublicV4(v4());
    if (std::memcmp(b, kZero, 12) == 0) return isPublicV4(v4());  // IPv4-compatible (deprecated)
    return true;
}

}  // namespace

std::string addressText(const sockaddr* address)
{
    char text[INET6_ADDRSTRLEN] = "?";
    if (address->sa_family == AF_INET)
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(address)->sin_addr, text, sizeof text);
    else if (address->sa_family == AF_INET6)
        ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr, text, sizeof text);
    return text;
}

bool isPublicAddress(const sockaddr* address)
{
    if (address->sa_family == AF_INET)
        return isPublicV4(ntohl(reinterpret_cast<const sockaddr_in*>(address)->sin_addr.s_addr));
    if (address->sa_family == AF_INET6)
        return isPublicV6(reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr.s6_addr);
    return false;
}

std::optional<std::string> checkEndpointUrl(const std::string& url, bool allowPrivate)
{
    if (url.empty()) return "must not be empty";
    if (url.size() > kMaxUrlLength) return "is longer than " + std::to_string(kMaxUrlLength) + " characters";
    for (unsigned char c : url)
        if (c <= ' ' || c >= 0x7F) return "must not contain spaces, control or non-ASCII characters";
    Poco::URI uri;
    try {
        uri = Poco::URI(url);
    } catch (const Poco::Exception& e) {
        return "is not a URL: " + e.message();
    }
    const std::string scheme = Poco::toLower(uri.getScheme());
    if (scheme != "https" && scheme != "http") return "must be an https:// URL";
    if (scheme == "http" && !allowPrivate)
        return "must be https:// (http:// needs webhooks.allow_private_networks = true)";
    if (uri.getHost().empty()) return "has no host";
    if (!uri.getUserInfo().empty()) return "must not hold a user name or password";
    if (!uri.getFragment().empty() || url.find('#') != std::string::npos) return "must not have a #fragment";
    if (allowPrivate) return std::nullopt;

    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int rc = ::getaddrinfo(uri.getHost().c_str(), nullptr, &hints, &found);
    if (rc != 0) return "names a host that does not resolve (" + uri.getHost() + ": " + ::gai_strerror(rc) + ")";
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addresses(found, ::freeaddrinfo);
    for (const addrinfo* a = found; a; a = a->ai_next) {
        if (!isPublicAddress(a->ai_addr))
            return "resolves to " + addressText(a->ai_addr) +
                   ", a loopback, private or link-local address (allowed only with webhooks.allow_private_networks = true)";
    }
    return std::nullopt;
}

}  // namespace orderpay::webhooks
