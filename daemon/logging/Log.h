#pragma once

#include <Poco/Logger.h>
#include <Poco/Message.h>

#include <string>
#include <utility>
#include <vector>

namespace orderpay {

/// Structured fields of a log line (ORDER_ID, PAYMENT_ID, QUEUE,
/// MESSAGE_ID): carried as Poco::Message parameters, so the journal channel
/// can emit them as journal fields and an operator can filter on them.
using Fields = std::vector<std::pair<std::string, std::string>>;

inline void logLine(Poco::Logger& logger, Poco::Message::Priority priority, const std::string& text,
                    const Fields& fields = {})
{
    if (!logger.is(priority)) return;
    Poco::Message message(logger.name(), text, priority);
    for (const auto& [key, value] : fields) message.set(key, value);
    logger.log(message);
}

}  // namespace orderpay
