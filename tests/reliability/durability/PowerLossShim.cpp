// A power-loss model for the durability campaign, loaded into orderpayd with
// LD_PRELOAD. For every file whose path starts with $ORDERPAY_POWERLOSS_PREFIX
// (the database, its -wal and -journal; never the -shm, which a reboot
// discards anyway) it keeps a shadow copy in $ORDERPAY_POWERLOSS_SHADOW that
// holds what a disk would hold after a power cut: the file as of its last
// successful fsync/fdatasync. Writes are tracked as byte ranges per file (not
// per descriptor: a sync flushes the whole inode); a sync that the kernel
// confirmed copies those ranges, read back from the real file, into the
// shadow and sets the shadow's size. A file never synced has no shadow: it
// vanishes. The test kills the daemon, replaces the files by their shadows
// and restarts it; whatever was acknowledged without a sync is then gone.
//
// The real libc calls are found with dlsym(RTLD_NEXT); libsqlite3 imports
// open64, pwrite64, write, ftruncate64, fdatasync, unlink and close (checked
// with nm -D), the rest is covered for completeness.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

namespace {

using OpenFn = int (*)(const char*, int, ...);
using OpenatFn = int (*)(int, const char*, int, ...);
using WriteFn = ssize_t (*)(int, const void*, size_t);
using PwriteFn = ssize_t (*)(int, const void*, size_t, off_t);
using WritevFn = ssize_t (*)(int, const struct iovec*, int);
using TruncFn = int (*)(int, off_t);
using SyncFn = int (*)(int);
using CloseFn = int (*)(int);
using UnlinkFn = int (*)(const char*);

template <typename F> F real(const char* name)
{
    return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

struct Range {
    off_t begin;
    off_t end;
};

// One tracked file (by path; SQLite opens each file once per connection).
struct Tracked {
    char path[PATH_MAX];
    char shadow[PATH_MAX];
    std::vector<Range> dirty; // written since the last sync
    off_t truncatedTo = -1;   // smallest size set since the last sync, -1 if none
};

constexpr int kMaxFd = 65536;

pthread_mutex_t gMutex = PTHREAD_MUTEX_INITIALIZER;
bool gEnabled = false;
char gPrefix[PATH_MAX];
std::size_t gPrefixLen = 0;
char gShadowDir[PATH_MAX];
std::vector<Tracked*>* gFiles = nullptr; // never freed: used until exit
Tracked* gByFd[kMaxFd];

struct Lock {
    Lock() { pthread_mutex_lock(&gMutex); }
    ~Lock() { pthread_mutex_unlock(&gMutex); }
};

void init()
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, [] {
        const char* prefix = std::getenv("ORDERPAY_POWERLOSS_PREFIX");
        const char* shadow = std::getenv("ORDERPAY_POWERLOSS_SHADOW");
        if (!prefix || !*prefix || !shadow || !*shadow) return;
        if (std::strlen(prefix) >= sizeof gPrefix || std::strlen(shadow) >= sizeof gShadowDir) return;
        std::strcpy(gPrefix, prefix);
        gPrefixLen = std::strlen(prefix);
        std::strcpy(gShadowDir, shadow);
        gFiles = new std::vector<Tracked*>();
        gEnabled = true;
    });
}

bool endsWith(const char* s, const char* suffix)
{
    const std::size_t n = std::strlen(s), m = std::strlen(suffix);
    return n >= m && std::strcmp(s + n - m, suffix) == 0;
}

// The tracked entry for `path`, created on first use; null if not ours.
Tracked* trackedFor(const char* path)
{
    if (!gEnabled || !path || std::strncmp(path, gPrefix, gPrefixLen) != 0) return nullptr;
    if (endsWith(path, "-shm")) return nullptr;
    if (std::strlen(path) >= PATH_MAX) return nullptr;
    for (Tracked* t : *gFiles)
        if (std::strcmp(t->path, path) == 0) return t;
    const char* base = std::strrchr(path, '/');
    base = base ? base + 1 : path;
    auto* t = new Tracked();
    std::strcpy(t->path, path);
    if (std::strlen(gShadowDir) + 1 + std::strlen(base) >= PATH_MAX) return nullptr;
    std::strcpy(t->shadow, gShadowDir);
    std::strcat(t->shadow, "/");
    std::strcat(t->shadow, base);
    gFiles->push_back(t);
    return t;
}

Tracked* byFd(int fd)
{
    return fd >= 0 && fd < kMaxFd ? gByFd[fd] : nullptr;
}

void noteOpen(int fd, const char* path, int flags)
{
    if (fd < 0 || fd >= kMaxFd) return;
    init();
    Lock lock;
    Tracked* t = trackedFor(path);
    gByFd[fd] = t;
    if (t && (flags & O_TRUNC)) t->truncatedTo = 0;
}

void noteWrite(int fd, off_t offset, ssize_t written)
{
    if (written <= 0) return;
    Lock lock;
    if (Tracked* t = byFd(fd)) t->dirty.push_back({offset, offset + written});
}

void noteTruncate(int fd, off_t length)
{
    Lock lock;
    if (Tracked* t = byFd(fd)) t->truncatedTo = t->truncatedTo < 0 ? length : std::min(t->truncatedTo, length);
}

// After a successful sync of `fd`: bring the shadow up to the real file.
void applySync(int fd)
{
    Lock lock;
    Tracked* t = byFd(fd);
    if (!t) return;
    static const auto realOpen = real<OpenFn>("open");
    static const auto realPwrite = real<PwriteFn>("pwrite");
    static const auto realTrunc = real<TruncFn>("ftruncate");
    static const auto realClose = real<CloseFn>("close");
    struct stat st;
    if (::fstat(fd, &st) != 0) return;
    const int out = realOpen(t->shadow, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (out < 0) return;
    // Truncated and regrown since the last sync: the regrown part is zeros
    // unless written, never the old content.
    if (t->truncatedTo >= 0) realTrunc(out, t->truncatedTo);
    realTrunc(out, st.st_size);
    std::sort(t->dirty.begin(), t->dirty.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
    std::vector<char> buf;
    off_t done = 0; // ranges overlap; copy each byte once
    for (const Range& r : t->dirty) {
        const off_t begin = std::max(r.begin, done);
        const off_t end = std::min<off_t>(r.end, st.st_size);
        if (begin >= end) continue;
        buf.resize(static_cast<std::size_t>(end - begin));
        const ssize_t n = ::pread(fd, buf.data(), buf.size(), begin);
        if (n > 0) realPwrite(out, buf.data(), static_cast<std::size_t>(n), begin);
        done = end;
    }
    realClose(out);
    t->dirty.clear();
    t->truncatedTo = -1;
}

int openMode(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, int) : 0;
}

} // namespace

extern "C" {

int open(const char* path, int flags, ...)
{
    static const auto next = real<OpenFn>("open");
    va_list ap;
    va_start(ap, flags);
    const int mode = openMode(flags, ap);
    va_end(ap);
    const int fd = next(path, flags, mode);
    noteOpen(fd, path, flags);
    return fd;
}

int open64(const char* path, int flags, ...)
{
    static const auto next = real<OpenFn>("open64");
    va_list ap;
    va_start(ap, flags);
    const int mode = openMode(flags, ap);
    va_end(ap);
    const int fd = next(path, flags, mode);
    noteOpen(fd, path, flags);
    return fd;
}

int openat(int dirfd, const char* path, int flags, ...)
{
    static const auto next = real<OpenatFn>("openat");
    va_list ap;
    va_start(ap, flags);
    const int mode = openMode(flags, ap);
    va_end(ap);
    const int fd = next(dirfd, path, flags, mode);
    // Only absolute paths can match the prefix; SQLite uses open64 anyway.
    if (path[0] == '/') noteOpen(fd, path, flags);
    return fd;
}

int openat64(int dirfd, const char* path, int flags, ...)
{
    static const auto next = real<OpenatFn>("openat64");
    va_list ap;
    va_start(ap, flags);
    const int mode = openMode(flags, ap);
    va_end(ap);
    const int fd = next(dirfd, path, flags, mode);
    if (path[0] == '/') noteOpen(fd, path, flags);
    return fd;
}

ssize_t write(int fd, const void* data, size_t size)
{
    static const auto next = real<WriteFn>("write");
    if (!byFd(fd)) return next(fd, data, size);
    const off_t at = ::lseek(fd, 0, SEEK_CUR);
    const ssize_t n = next(fd, data, size);
    if (at >= 0) noteWrite(fd, at, n);
    return n;
}

ssize_t pwrite(int fd, const void* data, size_t size, off_t offset)
{
    static const auto next = real<PwriteFn>("pwrite");
    const ssize_t n = next(fd, data, size, offset);
    if (byFd(fd)) noteWrite(fd, offset, n);
    return n;
}

ssize_t pwrite64(int fd, const void* data, size_t size, off_t offset)
{
    static const auto next = real<PwriteFn>("pwrite64");
    const ssize_t n = next(fd, data, size, offset);
    if (byFd(fd)) noteWrite(fd, offset, n);
    return n;
}

ssize_t writev(int fd, const struct iovec* iov, int count)
{
    static const auto next = real<WritevFn>("writev");
    if (!byFd(fd)) return next(fd, iov, count);
    const off_t at = ::lseek(fd, 0, SEEK_CUR);
    const ssize_t n = next(fd, iov, count);
    if (at >= 0) noteWrite(fd, at, n);
    return n;
}

int ftruncate(int fd, off_t length)
{
    static const auto next = real<TruncFn>("ftruncate");
    const int r = next(fd, length);
    if (r == 0 && byFd(fd)) noteTruncate(fd, length);
    return r;
}

int ftruncate64(int fd, off_t length)
{
    static const auto next = real<TruncFn>("ftruncate64");
    const int r = next(fd, length);
    if (r == 0 && byFd(fd)) noteTruncate(fd, length);
    return r;
}

int fsync(int fd)
{
    static const auto next = real<SyncFn>("fsync");
    const int r = next(fd);
    if (r == 0 && byFd(fd)) applySync(fd);
    return r;
}

int fdatasync(int fd)
{
    static const auto next = real<SyncFn>("fdatasync");
    const int r = next(fd);
    if (r == 0 && byFd(fd)) applySync(fd);
    return r;
}

int close(int fd)
{
    static const auto next = real<CloseFn>("close");
    if (fd >= 0 && fd < kMaxFd && gByFd[fd]) {
        Lock lock;
        gByFd[fd] = nullptr;
    }
    return next(fd);
}

// Removing a file is a directory change; the model applies it at once (SQLite
// removes a WAL only after its content reached the database and was synced).
int unlink(const char* path)
{
    static const auto next = real<UnlinkFn>("unlink");
    const int r = next(path);
    if (r == 0) {
        init();
        Lock lock;
        if (Tracked* t = trackedFor(path)) {
            next(t->shadow);
            t->dirty.clear();
            t->truncatedTo = -1;
        }
    }
    return r;
}

} // extern "C"
