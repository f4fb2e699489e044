#include "http/Auth.h"

#include <Poco/SHA2Engine.h>
#include <Poco/String.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace orderpay::http {

Auth::Auth(std::string tokenFile, std::string adminTokenFile)
    : tokenFile_(std::move(tokenFile)), adminTokenFile_(std::move(adminTokenFile))
{
    if (enabled()) tokens_ = load(tokenFile_);
    if (adminEnabled()) adminTokens_ = load(adminTokenFile_);
}

Auth::Digest Auth::digest(const std::string& token)
{
    Poco::SHA2Engine engine(Poco::SHA2Engine::SHA_256);
    engine.update(token);
    const auto& d = engine.digest();
    Digest out{};
    std::copy(d.begin(), d.end(), out.begin());
    return out;
}

std::vector<Auth::Digest> Auth::load(const std::string& file)
{
    // Messages start with the problem, not the key: Config names the key
    // and the file it came from.
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(file + " cannot be read: " + std::strerror(errno));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw std::runtime_error(file + " cannot be read: " + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) throw std::runtime_error(file + " is not a regular file");
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        throw std::runtime_error(file +
                                 " is accessible to other users; make it readable by the daemon only (chmod 600)");
    }
    std::string text;
    char buffer[4096];
    for (;;) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw std::runtime_error(file + " cannot be read: " + std::strerror(errno));
        if (n == 0) break;
        text.append(buffer, static_cast<std::size_t>(n));
        if (text.size() > 1024 * 1024) throw std::runtime_error(file + " is larger than 1 MiB: not a token file");
    }
    std::vector<Digest> tokens;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        const std::string token = Poco::trim(line);
        if (token.empty() || token[0] == '#') continue;
        tokens.push_back(digest(token));
    }
    if (tokens.empty()) throw std::runtime_error(file + " holds no token");
    return tokens;
}

void Auth::reload()
{
    auto fresh = enabled() ? load(tokenFile_) : std::vector<Digest>{};
    auto freshAdmin = adminEnabled() ? load(adminTokenFile_) : std::vector<Digest>{};
    std::lock_guard lock(mutex_);
    tokens_ = std::move(fresh);
    adminTokens_ = std::move(freshAdmin);
}

bool Auth::matches(const std::vector<Digest>& tokens, const Digest& given)
{
    unsigned char anyMatch = 0;
    for (const auto& t : tokens) {
        unsigned char diff = 0;
        for (std::size_t i = 0; i < t.size(); ++i) diff |= static_cast<unsigned char>(t[i] ^ given[i]);
        anyMatch |= static_cast<unsigned char>(diff == 0);
    }
    return anyMatch != 0;
}

Auth::Verdict Auth::check(const Poco::Net::HTTPServerRequest& request, Access access) const
{
    const bool adminRoute = access == Access::Admin && adminEnabled();
    if (!adminRoute && !enabled()) return Verdict::Allowed;
    const std::string header = request.get("Authorization", "");
    static const std::string kScheme = "Bearer ";
    if (header.size() <= kScheme.size() || Poco::icompare(header.substr(0, kScheme.size()), kScheme) != 0) {
        return Verdict::Unauthorized;
    }
    const Digest given = digest(Poco::trim(header.substr(kScheme.size())));
    bool client = false;
    bool admin = false;
    {
        std::lock_guard lock(mutex_);
        // Both compared, always: which file matched must not show in the time.
        client = matches(tokens_, given);
        admin = matches(adminTokens_, given);
    }
    if (adminRoute) return admin ? Verdict::Allowed : client ? Verdict::Forbidden : Verdict::Unauthorized;
    return client || admin ? Verdict::Allowed : Verdict::Unauthorized;
}

}  // namespace orderpay::http
