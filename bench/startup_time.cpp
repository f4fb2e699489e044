// startup_time: milliseconds from starting orderpayd to its READY=1, the
// way systemd counts them (Type=notify).
//
//   startup_time ORDERPAYD [ARG]...
//
// Listens on a private notify socket, starts the daemon with NOTIFY_SOCKET
// pointing at it, waits (at most 60 s) for READY=1, then stops the daemon
// with SIGTERM and prints one line in bench/run's format.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char** argv)
{
    if (argc < 2) {
        std::fprintf(stderr, "usage: startup_time ORDERPAYD [ARG]...\n");
        return 2;
    }
    const int sock = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = "/tmp/orderpay-startup-" + std::to_string(::getpid()) + ".sock";
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    ::unlink(path.c_str());
    if (sock < 0 || ::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        std::perror("startup_time: notify socket");
        return 1;
    }
    ::setenv("NOTIFY_SOCKET", path.c_str(), 1);

    const auto start = std::chrono::steady_clock::now();
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::execv(argv[1], argv + 1);
        std::perror("startup_time: exec");
        ::_exit(127);
    }
    const auto deadline = start + std::chrono::seconds(60);
    bool ready = false;
    while (!ready && std::chrono::steady_clock::now() < deadline) {
        pollfd p{sock, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) {
            int status = 0;
            if (::waitpid(pid, &status, WNOHANG) == pid) {
                std::fprintf(stderr, "startup_time: the daemon exited before READY=1 (status %d)\n", status);
                return 1;
            }
            continue;
        }
        char buf[4096];
        const ssize_t n = ::recv(sock, buf, sizeof buf - 1, 0);
        if (n <= 0) continue;
        buf[n] = '\0';
        // One datagram may carry several assignments, one per line.
        for (const char* line = buf; line && *line; line = std::strchr(line, '\n') ? std::strchr(line, '\n') + 1 : nullptr)
            if (std::strncmp(line, "READY=1", 7) == 0) ready = true;
    }
    const auto readyAt = std::chrono::steady_clock::now();
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ::close(sock);
    ::unlink(path.c_str());
    if (!ready) {
        std::fprintf(stderr, "startup_time: no READY=1 within 60 s\n");
        return 1;
    }
    std::printf("%.1f\n", std::chrono::duration<double, std::milli>(readyAt - start).count());
    return 0;
}
