#pragma once

#include <Poco/Net/HTTPServerRequest.h>

#include <array>
#include <mutex>
#include <string>
#include <vector>

namespace orderpay::http {

/// Bearer tokens from http.auth.token_file, one per line. Tokens are kept
/// only as SHA-256 digests and compared in constant time, against every
/// token, so neither the content nor the position of a match leaks
/// through timing.
class Auth {
public:
    /// Auth off when `tokenFile` is empty. Throws std::runtime_error with an
    /// operator-facing message if the file is unreadable, empty, or
    /// readable by others than its owner.
    explicit Auth(std::string tokenFile);

    /// Reads `tokenFile` as the constructor would and throws what it would
    /// (the configuration check's way of finding a file that will not do).
    static void check(const std::string& tokenFile) { load(tokenFile); }

    bool enabled() const { return !tokenFile_.empty(); }
    bool allows(const Poco::Net::HTTPServerRequest& request) const;
    /// Re-reads the token file (SIGHUP); keeps the old tokens if that fails.
    void reload();

private:
    using Digest = std::array<unsigned char, 32>;
    static std::vector<Digest> load(const std::string& file);
    static Digest digest(const std::string& token);

    std::string tokenFile_;
    mutable std::mutex mutex_;
    std::vector<Digest> tokens_;
};

}  // namespace orderpay::http
