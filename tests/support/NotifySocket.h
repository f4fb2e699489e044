#pragma once
// A stand-in for systemd's notification socket (NOTIFY_SOCKET), shared by
// the unit and end-to-end tests.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace test_support {

class NotifySocket {
    using Millis = std::chrono::milliseconds;

public:
    explicit NotifySocket(std::string path) : path_(std::move(path))
    {
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        REQUIRE(path_.size() < sizeof addr.sun_path);
        std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        int on = 1; // accept credentials like systemd does
        ::setsockopt(fd_, SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
    }
    ~NotifySocket()
    {
        ::close(fd_);
        ::unlink(path_.c_str());
    }

    // Receives until `count` lines equal to (or, with prefix, starting with)
    // `line` have arrived, or the deadline passes.
    bool waitFor(const std::string& line, int count, Millis timeout, bool prefix = false)
    {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            if (this->count(line, prefix) >= count) return true;
            auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 100))) <= 0) continue;
            char buf[4096];
            ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) continue;
            take(std::string(buf, static_cast<std::size_t>(n)));
        }
    }
    // Takes what has arrived so far, without waiting.
    void drain()
    {
        char buf[4096];
        for (;;) {
            const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
            if (n <= 0) return;
            take(std::string(buf, static_cast<std::size_t>(n)));
        }
    }
    int count(const std::string& line, bool prefix = false) const
    {
        return static_cast<int>(std::count_if(lines.begin(), lines.end(), [&](const std::string& l) {
            return prefix ? l.rfind(line, 0) == 0 : l == line;
        }));
    }
    int indexOf(const std::string& line) const
    {
        auto it = std::find(lines.begin(), lines.end(), line);
        return it == lines.end() ? -1 : static_cast<int>(it - lines.begin());
    }

    std::vector<std::string> lines;

private:
    void take(const std::string& datagram)
    {
        std::istringstream in(datagram);
        std::string l;
        while (std::getline(in, l))
            if (!l.empty()) lines.push_back(l);
    }

    std::string path_;
    int fd_ = -1;
};

}  // namespace test_support
