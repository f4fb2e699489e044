#include "app/OrderpayApp.h"
#include "store/sqlite/Database.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include <malloc.h>
#include <unistd.h>

namespace {

/// Every part of the daemon joins the threads it started when it stops or
/// when its start fails. One still running here would run on against
/// objects already destroyed: say so, naming them, so that it is seen (the
/// tests look for this line).
void reportThreadsLeft()
{
    std::string names;
    int others = 0;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
        if (task.path().filename() == std::to_string(::getpid())) continue;
        std::ifstream comm(task.path() / "comm");
        std::string name;
        std::getline(comm, name);
        names += (others++ ? ", " : "") + name;
    }
    if (others > 0) std::cerr << "orderpayd: " << others << " threads still running at exit: " << names << std::endl;
}

}  // namespace

int main(int argc, char** argv)
{
    // These two settings are for glibc's allocator, which orderpayd uses
    // when it is built without jemalloc (the sanitizers' build); with
    // jemalloc they change nothing. glibc gives each thread that allocates
    // its own arena (up to 8 per core), and memory freed in an arena stays
    // with it: under steady load the RSS grew for minutes with no live heap
    // growth behind it; two arenas keep it flat. MALLOC_ARENA_MAX, if the
    // operator sets it, still wins.
    if (!std::getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 2);
    // Buffers of 128 KiB and more (list pages, big bodies) are mapped and
    // unmapped on their own. glibc's default raises this threshold after
    // each such free, and from then on they are cut from the arenas, whose
    // freed pieces stay resident between trims.
    if (!std::getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    // Before any database opens (Database::useMultiThreadMode says why).
    orderpay::sqlite::Database::useMultiThreadMode();
    try {
        int code = 0;
        {
            orderpay::OrderpayApp app;
            code = app.run(argc, argv);
        }
        reportThreadsLeft();
        return code;
    } catch (const Poco::Exception& e) {
        // Unknown or malformed command-line options land here.
        std::cerr << "orderpayd: " << e.displayText() << " (see --help)" << std::endl;
        return Poco::Util::Application::EXIT_USAGE;
    } catch (const std::exception& e) {
        std::cerr << "orderpayd: " << e.what() << std::endl;
        return Poco::Util::Application::EXIT_SOFTWARE;
    }
}
