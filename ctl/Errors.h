// What can end an orderpayctl run early, one type per exit code, so that
// main() alone decides what the shell sees (SPEC: 1 the API answered an
// error, 2 usage, 3 the daemon cannot be reached).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace orderpayctl {

enum ExitCode : int { kExitOk = 0, kExitApiError = 1, kExitUsage = 2, kExitUnreachable = 3 };

// The command line is wrong. `usage` is printed after the message: the
// whole usage by default, one command's synopsis for that command's
// arguments, nothing for, say, an unreadable --config file (where the usage
// would bury the one line that matters).
class UsageError : public std::runtime_error {
public:
    enum class Show { All, Command, Nothing };
    explicit UsageError(const std::string& message, Show show = Show::All, std::string command = {})
        : std::runtime_error(message), show_(show), command_(std::move(command))
    {
    }
    Show show() const { return show_; }
    const std::string& command() const { return command_; }

private:
    Show show_;
    std::string command_;
};

// The daemon answered, but not with what was asked: a problem+json (its
// title and detail), another error status, or a body that is not JSON.
// `hints` are extra lines for the operator (which token was sent, ...).
class ApiError : public std::runtime_error {
public:
    ApiError(const std::string& message, std::vector<std::string> hints = {})
        : std::runtime_error(message), hints_(std::move(hints))
    {
    }
    const std::vector<std::string>& hints() const { return hints_; }

private:
    std::vector<std::string> hints_;
};

// No answer at all: connection refused, timeout, unknown host.
class Unreachable : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

} // namespace orderpayctl
