#pragma once

#include <cstdint>
#include <string>
#include <string_view>

/// Standard Webhooks signing (https://www.standardwebhooks.com): a secret is
/// "whsec_" + base64 of its key; a signature is "v1," + base64 of
/// HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>").
namespace orderpay::webhooks {

/// A new secret: "whsec_" + base64 of 32 bytes from the OS's random source.
std::string newSecret();
/// "v1,<base64>" for one secret; throws std::invalid_argument for a secret
/// not of the whsec_ form.
std::string sign(std::string_view secret, std::string_view id, std::int64_t timestamp, std::string_view body);

}  // namespace orderpay::webhooks
