// Catch2 entry point for the soak campaign.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <csignal>

namespace {
// A keep-alive connection the daemon closed must fail with EPIPE, not kill
// the test runner.
const bool sigpipeIgnored = (std::signal(SIGPIPE, SIG_IGN), true);
} // namespace
