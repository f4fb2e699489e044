// The commands: each parses its own arguments first (a usage error never
// costs a request), asks the API, and prints a table or, with --json, the
// API's document as received.
#pragma once

#include "ApiClient.h"

#include <iosfwd>
#include <string>
#include <vector>

namespace orderpayctl {

struct Context {
    const ApiClient& api;
    bool json = false;
    std::ostream& out;
    std::ostream& err; // prompts and notes, so --json output stays clean
    std::istream& in;
    bool interactive = false; // stdin is a terminal: bulk changes ask first
};

using Args = std::vector<std::string>;

bool isCommand(const std::string& name);
// Runs one command; returns the exit code. Throws the errors of Errors.h.
int runCommand(const std::string& name, const Args& args, Context& ctx);

// OrderCommands.cpp
int ordersCommand(const Args& args, Context& ctx);
int orderCommand(const Args& args, Context& ctx);
int cancelCommand(const Args& args, Context& ctx);
// AdminCommands.cpp
int statusCommand(const Args& args, Context& ctx);
int deadLettersCommand(const Args& args, Context& ctx);
int replayCommand(const Args& args, Context& ctx);
// WebhookCommands.cpp
int webhooksCommand(const Args& args, Context& ctx);

// Shared by the command files.
// Prints `response`'s body for --json (checked to be JSON first).
void printJson(const ApiResponse& response, Context& ctx);
// `value` made safe as one path segment or query value.
std::string encode(const std::string& value);

} // namespace orderpayctl
