#pragma once

#include <Poco/Net/HTTPServerRequest.h>

#include <array>
#include <mutex>
#include <string>
#include <vector>

namespace orderpay::http {

/// Bearer tokens: the clients' (http.auth.token_file) and the
/// operators' (http.auth.admin_token_file), one per line. Tokens are kept
/// only as SHA-256 digests and compared in constant time, against every
/// token of both files, so neither the content, the position nor the kind
/// of a match leaks through timing.
class Auth {
public:
    /// Who a route is for.
    enum class Access {
        Client,  // the API: a client token, or an admin token
        Admin,   // the operator routes: an admin token when there is an admin file
    };
    enum class Verdict { Allowed, Unauthorized, Forbidden };

    /// A file left empty turns its tokens off. Throws std::runtime_error
    /// with an operator-facing message if a file is unreadable, empty, or
    /// readable by others than its owner.
    explicit Auth(std::string tokenFile, std::string adminTokenFile = {});

    /// Reads `tokenFile` as the constructor would and throws what it would
    /// (the configuration check's way of finding a file that will not do).
    static void check(const std::string& tokenFile) { load(tokenFile); }

    /// Client tokens are required (http.auth.token_file is set).
    bool enabled() const { return !tokenFile_.empty(); }
    bool adminEnabled() const { return !adminTokenFile_.empty(); }
    /// Without an admin file, the operator routes take what the API takes;
    /// with one, only its tokens (a client token is then Forbidden).
    Verdict check(const Poco::Net::HTTPServerRequest& request, Access access) const;
    /// Re-reads the token files (SIGHUP); keeps the old tokens if that fails.
    void reload();

private:
    using Digest = std::array<unsigned char, 32>;
    static std::vector<Digest> load(const std::string& file);
    static Digest digest(const std::string& token);
    /// Whether `given` is one of `tokens`, in time independent of which.
    static bool matches(const std::vector<Digest>& tokens, const Digest& given);

    std::string tokenFile_;
    std::string adminTokenFile_;
    mutable std::mutex mutex_;
    std::vector<Digest> tokens_;
    std::vector<Digest> adminTokens_;
};

}  // namespace orderpay::http
