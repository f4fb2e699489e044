// The unit tests run SQLite in the mode the daemon runs it in (daemon/main.cpp):
// multi-thread, set before the first connection opens. Catch2's main comes
// from Debian's prebuilt Catch2::Catch2WithMain, so this happens as the test
// run starts, from a listener (Catch2's external interfaces).
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>

#include "store/sqlite/Database.h"

#include <cstdio>
#include <cstdlib>

namespace {

struct SqliteMode : Catch::TestEventListenerBase {
    using TestEventListenerBase::TestEventListenerBase;

    void testRunStarting(const Catch::TestRunInfo& info) override
    {
        TestEventListenerBase::testRunStarting(info);
        if (!orderpay::sqlite::Database::useMultiThreadMode()) {
            std::fputs("unit_tests: SQLite started before the test run; it would not run as the daemon does\n", stderr);
            std::abort();
        }
    }
};

} // namespace

CATCH_REGISTER_LISTENER(SqliteMode)
