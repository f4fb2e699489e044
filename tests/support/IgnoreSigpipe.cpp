// Compiled into every test program that talks to a daemon (an INTERFACE source
// of e2e_support): writing to a socket the daemon already closed (a 413, a
// dropped connection, a daemon just SIGKILLed) must fail with EPIPE, not kill
// the test runner. Daemons the harness starts get SIGPIPE back (Daemon.cpp).
#include <csignal>

namespace {
const bool sigpipeIgnored = (std::signal(SIGPIPE, SIG_IGN), true);
} // namespace
