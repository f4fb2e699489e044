#include "app/OrderpayApp.h"
#include "store/Database.h"

#include <cstdlib>
#include <iostream>

#include <malloc.h>

int main(int argc, char** argv)
{
    // glibc's per-thread caches (tcache) stay on: they spare the allocator's
    // arena locks, which the HTTP threads and the writer otherwise queue for
    // (docs/performance.md: a third more accepted orders per second). Issue
    // 6 had turned them off when the soak's RSS drifted up 11 % in 10
    // minutes; with SQLite's heap capped that drift is gone (0.8 %, with the
    // caches, docs/reliability.md). GLIBC_TUNABLES=glibc.malloc.tcache_count=0
    // still turns them off.

    // glibc gives each thread that allocates its own arena (up to 8 per
    // core), and memory freed in an arena stays with it. Under steady load
    // the HTTP, worker and committer threads kept growing the RSS for
    // minutes with no live heap growth behind it (the soak campaign, issue
    // 6: +20 % in 4 min); two arenas keep it flat. MALLOC_ARENA_MAX, if the
    // operator sets it, still wins.
    if (!std::getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 2);
    // Buffers of 128 KiB and more (list pages, big bodies) are mapped and
    // unmapped on their own. glibc's default raises this threshold after
    // each such free, and from then on they are cut from the arenas, whose
    // freed pieces stay resident: the soak's 10-minute run saw the RSS
    // climb by 2-3 MB a minute between trims.
    if (!std::getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    // Before any database opens (Database::useMultiThreadMode says why).
    orderpay::Database::useMultiThreadMode();
    try {
        orderpay::OrderpayApp app;
        return app.run(argc, argv);
    } catch (const Poco::Exception& e) {
        // Unknown or malformed command-line options land here.
        std::cerr << "orderpayd: " << e.displayText() << " (see --help)" << std::endl;
        return Poco::Util::Application::EXIT_USAGE;
    } catch (const std::exception& e) {
        std::cerr << "orderpayd: " << e.what() << std::endl;
        return Poco::Util::Application::EXIT_SOFTWARE;
    }
}
