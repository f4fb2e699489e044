#include "common/PeriodicThread.h"

#include "logging/Log.h"

#include <pthread.h>

namespace orderpay {

PeriodicThread::PeriodicThread(std::string name, std::chrono::milliseconds interval, std::function<void()> tick)
    : name_(std::move(name)), interval_(interval), tick_(std::move(tick))
{
}

PeriodicThread::~PeriodicThread() { stop(); }

void PeriodicThread::start()
{
    {
        std::lock_guard lock(mutex_);
        stopping_ = false;
    }
    thread_ = std::thread([this] {
        pthread_setname_np(pthread_self(), name_.substr(0, 15).c_str());
        run();
    });
}

void PeriodicThread::stop()
{
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void PeriodicThread::run()
{
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        lock.unlock();
        try {
            tick_();
        } catch (const std::exception& e) {
            static Poco::Logger& log = Poco::Logger::get("orderpay");
            logLine(log, Poco::Message::PRIO_WARNING, name_ + ": " + e.what());
        }
        lock.lock();
        wake_.wait_for(lock, interval_, [this] { return stopping_; });
    }
}

}  // namespace orderpay
