#include "Endpoint.h"

#include "Errors.h"

#include <Poco/AutoPtr.h>
#include <Poco/Exception.h>
#include <Poco/Net/IPAddress.h>
#include <Poco/NumberParser.h>
#include <Poco/String.h>
#include <Poco/URI.h>
#include <Poco/Util/PropertyFileConfiguration.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <unistd.h>

namespace orderpayctl {
namespace {

struct ReadResult {
    bool ok = false;
    std::string text;
    std::string error; // strerror text when !ok
};

ReadResult readWhole(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) return {false, {}, std::strerror(errno)};
    std::ostringstream s;
    s << in.rdbuf();
    if (in.bad()) return {false, {}, std::strerror(errno)};
    return {true, s.str(), {}};
}

// The daemon listens on every address: talk to it on loopback.
std::string connectableHost(const std::string& host)
{
    if (host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]") return "127.0.0.1";
    return host;
}

std::string urlHost(const std::string& host)
{
    // An IPv6 literal needs brackets in a URL.
    return host.find(':') != std::string::npos && host.front() != '[' ? "[" + host + "]" : host;
}

struct ConfigValues {
    bool read = false;
    std::string host = "127.0.0.1";
    std::string port = "1212";
    std::string adminTokenFile;
    std::string tokenFile;
};

ConfigValues readConfig(const GlobalOptions& options)
{
    ConfigValues values;
    const std::string path = options.config.value_or(kDefaultConfig);
    // Checked first with access(): PropertyFileConfiguration's message for a
    // missing file does not say why.
    if (::access(path.c_str(), R_OK) != 0) {
        if (options.config) {
            throw UsageError("cannot read the configuration " + path + ": " + std::strerror(errno),
                             UsageError::Show::Nothing);
        }
        return values; // no daemon configured on this machine: the defaults, or --url
    }
    try {
        Poco::AutoPtr<Poco::Util::PropertyFileConfiguration> props(new Poco::Util::PropertyFileConfiguration(path));
        values.read = true;
        values.host = Poco::trim(props->getRawString("http.host", values.host));
        values.port = Poco::trim(props->getRawString("http.port", values.port));
        values.adminTokenFile = Poco::trim(props->getRawString("http.auth.admin_token_file", ""));
        values.tokenFile = Poco::trim(props->getRawString("http.auth.token_file", ""));
        if (values.host.empty()) values.host = "127.0.0.1";
        if (values.port.empty()) values.port = "1212";
    } catch (const Poco::Exception& e) {
        throw UsageError("cannot read the configuration " + path + ": " + e.displayText(), UsageError::Show::Nothing);
    }
    return values;
}

} // namespace

std::string firstToken(const std::string& text)
{
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        const std::string token = Poco::trim(line);
        if (!token.empty() && token[0] != '#') return token;
    }
    return {};
}

Endpoint Endpoint::resolve(const GlobalOptions& options)
{
    const ConfigValues config = readConfig(options);
    const std::string configPath = options.config.value_or(kDefaultConfig);
    Endpoint e;

    if (options.url) {
        Poco::URI uri;
        try {
            uri = Poco::URI(*options.url);
        } catch (const Poco::Exception& ex) {
            throw UsageError("--url '" + *options.url + "' is not a URL: " + ex.message(), UsageError::Show::Nothing);
        }
        if (uri.getScheme() != "http")
            throw UsageError("--url must start with http:// (orderpayd speaks plain HTTP), not '" + *options.url + "'",
                             UsageError::Show::Nothing);
        if (uri.getHost().empty())
            throw UsageError("--url '" + *options.url + "' names no host", UsageError::Show::Nothing);
        // The API lives at the root; a path would be silently dropped.
        if (!uri.getPath().empty() && uri.getPath() != "/")
            throw UsageError("--url takes no path: give http://host:port, not '" + *options.url + "'",
                             UsageError::Show::Nothing);
        e.host = connectableHost(uri.getHost());
        e.port = uri.getPort();
    } else {
        unsigned port = 0;
        if (!Poco::NumberParser::tryParseUnsigned(config.port, port) || port == 0 || port > 65535) {
            throw UsageError("http.port '" + config.port + "' in " + configPath +
                                 " is not a port to connect to: give --url",
                             UsageError::Show::Nothing);
        }
        e.host = connectableHost(config.host);
        e.port = static_cast<unsigned short>(port);
    }
    e.url = "http://" + urlHost(e.host) + ":" + std::to_string(e.port);

    if (options.tokenFile) {
        // Named on the command line: a file that cannot be used is a mistake
        // to report now, not after a 401.
        const ReadResult r = readWhole(*options.tokenFile);
        if (!r.ok)
            throw UsageError("cannot read --token-file " + *options.tokenFile + ": " + r.error,
                             UsageError::Show::Nothing);
        e.token = firstToken(r.text);
        if (e.token.empty())
            throw UsageError("--token-file " + *options.tokenFile + " holds no token", UsageError::Show::Nothing);
        e.tokenOrigin = "the token of " + *options.tokenFile + " (--token-file)";
        return e;
    }
    // The admin file first: its token opens every route. If it cannot be
    // read (orderpayctl run by a user who may not), the client token still
    // opens the order commands.
    for (const auto& [key, file] : {std::pair{"http.auth.admin_token_file", config.adminTokenFile},
                                    std::pair{"http.auth.token_file", config.tokenFile}}) {
        if (file.empty()) continue;
        const std::string where = file + " (" + key + " in " + configPath + ")";
        const ReadResult r = readWhole(file);
        if (!r.ok) {
            e.tokenProblems.push_back("cannot read " + where + ": " + r.error);
            continue;
        }
        e.token = firstToken(r.text);
        if (e.token.empty()) {
            e.tokenProblems.push_back(where + " holds no token");
            continue;
        }
        e.tokenOrigin = "the token of " + where;
        break;
    }
    return e;
}

} // namespace orderpayctl
