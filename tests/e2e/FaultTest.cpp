// The database refusing writes: SPEC.md's 503 with Retry-After, nothing
// stored, reads still served, and recovery once the cause is gone.

#include "Daemon.h"
#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

using namespace e2e;

namespace {

/// A small tmpfs of our own, so the disk can really be filled. Needs root,
/// as the test command does.
class SmallDisk {
public:
    explicit SmallDisk(const std::string& path) : path_(path)
    {
        if (::mount("tmpfs", path.c_str(), "tmpfs", 0, "size=4m") != 0)
            FAIL("cannot mount a tmpfs at " << path << ": " << std::strerror(errno) << " (run the tests as root)");
    }
    ~SmallDisk() { ::umount2(path_.c_str(), MNT_DETACH); }

    /// Writes a filler file until the disk is full.
    void fill()
    {
        const int fd = ::open((path_ + "/filler").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        REQUIRE(fd >= 0);
        const std::string block(4096, 'x');
        while (::write(fd, block.data(), block.size()) > 0) {
        }
        ::close(fd);
    }
    void free() { ::unlink((path_ + "/filler").c_str()); }

private:
    std::string path_;
};

std::size_t orderCount(const HttpClient& c) { return c.listAllOrderIds().size(); }

}  // namespace

TEST_CASE("A full disk: writes are 503 with Retry-After, reads go on, and it recovers", "[errors][faults]")
{
    TempDir mountPoint;
    SmallDisk disk(mountPoint.path());
    Daemon d({"orders.processing_ms=0", "store.sqlite.path=" + mountPoint.path() + "/orderpay.db"});
    HttpClient c(d.port());
    const std::string first = c.createOrder(orderJson("before@example.com"));
    c.waitForOrderStatus(first, "awaiting_payment");

    disk.fill();
    // Writes may squeeze into pages SQLite already holds; keep writing until refused.
    Response refused;
    bool gotRefused = eventually([&] {
        refused = c.postOrder(orderJson("during@example.com"));
        return refused.status == 503;
    }, 10s, 10ms);
    INFO(refused.describe());
    REQUIRE(gotRefused);
    requireProblem(refused, 503, "/problems/unavailable");
    CHECK(refused.has("Retry-After"));
    const auto storedBefore = orderCount(c);  // reads still work

    // /health/ready samples the database at most once a second (and the
    // RabbitMQ fixture asked it while waiting for the broker): allow for that.
    Response ready;
    eventually([&] { return (ready = c.get("/health/ready")).status == 503; }, 3s, 100ms);
    INFO(ready.describe());
    CHECK(ready.status == 503);
    CHECK(ready.body.find("\"database\":\"unavailable\"") != std::string::npos);
    CHECK(c.getOrder(first).status == 200);

    // A refused request left nothing behind.
    CHECK(c.postOrder(orderJson("during@example.com")).status == 503);
    CHECK(orderCount(c) == storedBefore);

    disk.free();
    std::string after;
    REQUIRE(eventually([&] {
        auto r = c.postOrder(orderJson("after@example.com"));
        if (r.status != 202) return false;
        after = getString(r.obj(), "id").value_or("");
        return true;
    }, 10s, 50ms));
    c.waitForOrderStatus(after, "awaiting_payment");
    CHECK(eventually([&] { return c.get("/health/ready").status == 200; }, 5s, 100ms));
    CHECK(orderCount(c) == storedBefore + 1);
    CHECK(d.running());
}
