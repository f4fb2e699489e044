// Catch2 entry point for the durability campaigns (power loss, injected faults).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <csignal>

namespace {
// A daemon killed mid-request must not take the test runner along (EPIPE).
const bool sigpipeIgnored = (std::signal(SIGPIPE, SIG_IGN), true);
} // namespace
