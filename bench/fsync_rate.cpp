// fsync_rate: how many synced 4 KiB appends per second the disk under a
// folder takes. This is the ceiling of a server that syncs once per request;
// group commit is how orderpay gets past it.
//
//   fsync_rate [FOLDER] [SECONDS]      (defaults: current folder, 3)
//
// Prints two lines in bench/run's format (name value unit): one with
// fdatasync after each write (what SQLite's WAL does at commit), one with
// fsync.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double rate(const std::string& folder, double seconds, int (*sync)(int))
{
    const std::string path = folder + "/fsync_rate.tmp";
    const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (fd < 0) {
        std::perror(("fsync_rate: open " + path).c_str());
        std::exit(1);
    }
    std::vector<char> block(4096, 'x');
    const auto start = std::chrono::steady_clock::now();
    const auto end = start + std::chrono::duration<double>(seconds);
    long count = 0;
    auto now = start;
    // Appends like a WAL, wrapping at 64 MiB so a long run stays small.
    off_t offset = 0;
    for (; now < end; now = std::chrono::steady_clock::now()) {
        if (::pwrite(fd, block.data(), block.size(), offset) != static_cast<ssize_t>(block.size()) || sync(fd) != 0) {
            std::perror("fsync_rate: write and sync");
            std::exit(1);
        }
        offset = (offset + 4096) % (64 << 20);
        ++count;
    }
    ::close(fd);
    ::unlink(path.c_str());
    return static_cast<double>(count) / std::chrono::duration<double>(now - start).count();
}

}  // namespace

int main(int argc, char** argv)
{
    const std::string folder = argc > 1 ? argv[1] : ".";
    const double seconds = argc > 2 ? std::atof(argv[2]) : 3.0;
    std::printf("disk_fdatasync_per_s %.0f syncs/s\n", rate(folder, seconds, ::fdatasync));
    std::printf("disk_fsync_per_s %.0f syncs/s\n", rate(folder, seconds, ::fsync));
    return 0;
}
