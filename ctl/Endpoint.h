// Where the daemon is and which token to show it: from the command line,
// else from the daemon's own configuration file, so that on the daemon's
// machine a bare `orderpayctl status` just works.
#pragma once

#include "Options.h"

#include <string>
#include <vector>

namespace orderpayctl {

struct Endpoint {
    std::string url; // http://host:port, as the operator reads it in messages
    std::string host;
    unsigned short port = 0;
    std::string token;       // empty: no Authorization header
    std::string tokenOrigin; // where `token` came from, for a 401/403 message
    // Why a token file the configuration names could not be used. Not an
    // error by itself (the daemon may not need a token, or the other file's
    // token may do); shown when the daemon then refuses.
    std::vector<std::string> tokenProblems;

    // Throws UsageError for a bad --url, or an explicitly named --config or
    // --token-file that cannot be read.
    static Endpoint resolve(const GlobalOptions& options);
};

// The first line of `text` that is neither blank nor a `#` comment, trimmed
// (the daemon's token file format); empty if there is none.
std::string firstToken(const std::string& text);

} // namespace orderpayctl
