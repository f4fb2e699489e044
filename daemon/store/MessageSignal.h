#pragma once

#include <functional>
#include <string>
#include <utility>

namespace orderpay {

/// Tells whoever delivers a queue's messages that a commit added one (see
/// Store::setMessageListener). Set once, before other threads use the store.
class MessageSignal {
public:
    void set(std::function<void(const std::string& queue)> listener) { listener_ = std::move(listener); }
    void operator()(const std::string& queue) const
    {
        if (listener_) listener_(queue);
    }

private:
    std::function<void(const std::string&)> listener_;
};

}  // namespace orderpay
