// Catch2 entry point for the crash campaign.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <csignal>

namespace {
// A request to a daemon that was just SIGKILLed must fail with EPIPE, not
// kill the test runner.
const bool sigpipeIgnored = (std::signal(SIGPIPE, SIG_IGN), true);
} // namespace
