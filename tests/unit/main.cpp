#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "store/Database.h"

int main(int argc, char** argv)
{
    // SQLite in the mode the daemon runs it in (daemon/main.cpp).
    orderpay::Database::useMultiThreadMode();
    return Catch::Session().run(argc, argv);
}
