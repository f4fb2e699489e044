#pragma once

#include "settings/Settings.h"

#include <Poco/Util/AbstractConfiguration.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace orderpay {

/// One thing wrong with the configuration, written for the operator:
/// which file (or "-D" for a command-line override), which key, and why.
struct ConfigProblem {
    std::string source;
    std::string key;
    std::string message;
};

class ConfigError : public std::runtime_error {
public:
    explicit ConfigError(std::vector<ConfigProblem> problems);
    const std::vector<ConfigProblem>& problems() const { return problems_; }

private:
    std::vector<ConfigProblem> problems_;
};

/// Loads the properties file, applies `-D key=value` overrides on top, and
/// validates every key. Unknown keys and bad values are all collected, so
/// `--check-config` can list everything wrong at once. This is the one
/// place every rule of the configuration is applied: the daemon refuses to
/// start (exit 78) exactly when `--check-config` fails, and for the same
/// reasons: values, the files they name (the token file), and the
/// combinations refused at start (a non-loopback address without tokens).
class Config {
public:
    /// `file` may be empty (defaults and overrides only). A missing file
    /// is an error only when `fileRequired`.
    static Settings load(const std::string& file, bool fileRequired,
                         const std::map<std::string, std::string>& overrides);

    /// Parses "250ms", "10s", "5m", "24h" or a bare number of `bareUnit`.
    static bool parseDuration(const std::string& text, std::chrono::milliseconds bareUnit,
                              std::chrono::milliseconds& out);

    /// Every key orderpayd knows.
    static const std::vector<std::string>& knownKeys();
};

}  // namespace orderpay
