#include "broker/Broker.h"

namespace orderpay {

std::string_view toString(BrokerStatus::State state)
{
    switch (state) {
    case BrokerStatus::State::Ok: return "ok";
    case BrokerStatus::State::Disconnected: return "disconnected";
    case BrokerStatus::State::Unresponsive: return "unresponsive";
    }
    return "unknown";
}

}  // namespace orderpay
