// Catch2 entry point for the end-to-end tests.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <csignal>

namespace {
// Writing to a socket the daemon already closed (413, dropped connections)
// must fail with EPIPE, not kill the test runner.
const bool sigpipeIgnored = (std::signal(SIGPIPE, SIG_IGN), true);
} // namespace
