#pragma once

#include <optional>
#include <string>

struct sockaddr;

/// Where webhooks may go (the SSRF guard): https:// to public addresses,
/// unless webhooks.allow_private_networks permits http:// and addresses in
/// loopback, private, link-local and other non-public ranges. Checked when
/// an endpoint is registered (checkEndpointUrl) and again on the very
/// address each delivery connects to (isPublicAddress, from the HTTP
/// client's socket callback), so a name that resolves differently later
/// cannot lead a delivery inside.
namespace orderpay::webhooks {

inline constexpr std::size_t kMaxUrlLength = 2048;

/// False for IPv4 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12,
/// 192.0.0/24, 192.168/16, 198.18/15, 224/4 and 240/4; IPv6 ::, ::1,
/// fc00::/7, fe80::/10, fec0::/10, ff00::/8, and IPv4-mapped or NAT64
/// addresses of the IPv4 ranges.
bool isPublicAddress(const sockaddr* address);
/// An IPv4 or IPv6 address as text ("10.0.0.1", "::1"); "?" for another family.
std::string addressText(const sockaddr* address);

/// What is wrong with `url` as an endpoint's (for a 422), or nothing:
/// not an absolute http(s) URL with a host, user info or a fragment, too
/// long, http:// or a non-public address (literal or resolved) without
/// `allowPrivate`, a name that does not resolve.
std::optional<std::string> checkEndpointUrl(const std::string& url, bool allowPrivate);

}  // namespace orderpay::webhooks
