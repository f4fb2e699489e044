// The command line: global options (before the command), the command, and
// a small reader for each command's own arguments.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace orderpayctl {

inline constexpr const char* kDefaultConfig = "/etc/orderpay/orderpay.properties";

struct GlobalOptions {
    std::optional<std::string> url;
    std::optional<std::string> tokenFile;
    std::optional<std::string> config;
    bool json = false;
    bool help = false;
    bool version = false;
};

struct Invocation {
    GlobalOptions global;
    std::string command;           // empty with --help/--version
    std::vector<std::string> args; // everything after the command
};

// Throws UsageError. Global options must come before the command: what
// follows it belongs to the command.
Invocation parseCommandLine(int argc, const char* const argv[]);

// The --help text.
std::string usageText();
// One command's synopsis and a pointer to --help.
std::string commandUsage(const std::string& command);

// One command's arguments: options that take a value (`--limit 5`,
// `--limit=5`, may repeat), flags, and positionals, in any order. An option
// it was not told about is a usage error naming the command.
class CommandArgs {
public:
    CommandArgs(std::string command, const std::vector<std::string>& args, const std::set<std::string>& valueOptions,
                const std::set<std::string>& flags = {});

    bool flag(const std::string& name) const { return flags_.count(name) != 0; }
    std::optional<std::string> value(const std::string& name) const;
    std::vector<std::string> values(const std::string& name) const;
    const std::vector<std::string>& positionals() const { return positionals_; }

    // The positional at `index`, or a usage error "COMMAND needs WHAT".
    std::string require(std::size_t index, const std::string& what) const;
    // A usage error if more than `n` positionals were given.
    void atMost(std::size_t n) const;
    // --limit: an integer from 1 to `max` (the route's bound), if given.
    std::optional<int> limit(int max = 200) const;
    // A usage error about this command (its synopsis follows the message).
    [[noreturn]] void fail(const std::string& message) const;

private:
    std::string command_;
    std::multimap<std::string, std::string> values_;
    std::set<std::string> flags_;
    std::vector<std::string> positionals_;
};

} // namespace orderpayctl
