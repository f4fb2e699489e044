#include "app/OrderpayApp.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <iostream>

#include <malloc.h>
#include <unistd.h>

int main(int argc, char** argv)
{
    // glibc's per-thread caches (tcache) keep freed chunks for their thread;
    // neither the arena nor malloc_trim can give those pages back, and with
    // a few dozen threads they fill for many minutes (the soak campaign's
    // 10-minute runs: the RSS drifts up by 1.5-2 MB, +11 %, with the caches;
    // flat without). They are worth about a third more accepted orders per
    // second (docs/performance.md); an operator who prefers that sets
    // GLIBC_TUNABLES=glibc.malloc.tcache_count=7, which this respects. The
    // tunable is read only when a process starts: set it, and start again
    // once. If the exec fails, run with the caches.
    const char* tunables = std::getenv("GLIBC_TUNABLES");
    if (!tunables || !std::strstr(tunables, "glibc.malloc.tcache_count")) {
        const std::string off = "glibc.malloc.tcache_count=0";
        const std::string value = tunables && *tunables ? std::string(tunables) + ":" + off : off;
        // The binary's own path, not /proc/self/exe: the kernel names the
        // process after the file executed, and ps, top and pgrep should
        // show orderpayd, not "exe".
        char self[4096];
        const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0 && ::setenv("GLIBC_TUNABLES", value.c_str(), 1) == 0) {
            self[n] = '\0';
            ::execv(self, argv);
        }
    }
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
