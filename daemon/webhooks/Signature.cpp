#include "webhooks/Signature.h"

#include <Poco/Base64Decoder.h>
#include <Poco/Base64Encoder.h>
#include <Poco/HMACEngine.h>
#include <Poco/SHA2Engine.h>

#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace orderpay::webhooks {
namespace {

constexpr std::string_view kPrefix = "whsec_";

std::string base64(const std::string& bytes)
{
    std::ostringstream out;
    Poco::Base64Encoder encoder(out);
    encoder.rdbuf()->setLineLength(0);
    encoder << bytes;
    encoder.close();
    return out.str();
}

/// The HMAC engine's block size as Poco's HMACEngine wants it.
struct Sha256 : Poco::SHA2Engine {
    enum { BLOCK_SIZE = 64, DIGEST_SIZE = 32 };
    Sha256() : Poco::SHA2Engine(Poco::SHA2Engine::SHA_256) {}
};

}  // namespace

std::string newSecret()
{
    std::string key(32, '\0');
    for (std::size_t got = 0; got < key.size();) {
        const ssize_t n = ::getrandom(key.data() + got, key.size() - got, 0);
        if (n > 0) got += static_cast<std::size_t>(n);
        else if (n < 0 && errno != EINTR) throw std::runtime_error(std::string("getrandom: ") + std::strerror(errno));
    }
    return std::string(kPrefix) + base64(key);
}

std::string sign(std::string_view secret, std::string_view id, std::int64_t timestamp, std::string_view body)
{
    if (secret.substr(0, kPrefix.size()) != kPrefix) throw std::invalid_argument("not a whsec_ secret");
    std::istringstream in{std::string(secret.substr(kPrefix.size()))};
    Poco::Base64Decoder decoder(in);
    const std::string key((std::istreambuf_iterator<char>(decoder)), std::istreambuf_iterator<char>());
    Poco::HMACEngine<Sha256> hmac(key);
    hmac.update(id.data(), static_cast<unsigned>(id.size()));
    hmac.update(".", 1);
    const std::string ts = std::to_string(timestamp);
    hmac.update(ts);
    hmac.update(".", 1);
    hmac.update(body.data(), static_cast<unsigned>(body.size()));
    const auto& digest = hmac.digest();
    return "v1," + base64(std::string(digest.begin(), digest.end()));
}

}  // namespace orderpay::webhooks
