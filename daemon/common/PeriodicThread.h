#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace orderpay {

/// A thread of its own that runs `tick` every `interval` until stopped;
/// destruction stops it. stop() wakes it from its wait and joins it (a
/// tick under way finishes first). A tick that throws is logged and the
/// thread goes on.
class PeriodicThread {
public:
    /// `name`: the thread's name (top -H, gdb), at most 15 characters.
    PeriodicThread(std::string name, std::chrono::milliseconds interval, std::function<void()> tick);
    ~PeriodicThread();
    PeriodicThread(const PeriodicThread&) = delete;
    PeriodicThread& operator=(const PeriodicThread&) = delete;

    /// Starts the thread; the first tick runs at once.
    void start();
    void stop();

private:
    void run();

    std::string name_;
    std::chrono::milliseconds interval_;
    std::function<void()> tick_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace orderpay
