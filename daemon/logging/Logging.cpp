#include "logging/Logging.h"

#include <Poco/AutoPtr.h>
#include <Poco/ConsoleChannel.h>
#include <Poco/FormattingChannel.h>
#include <Poco/Logger.h>
#include <Poco/PatternFormatter.h>

namespace orderpay {

void setupLogging(const LoggingSettings& settings)
{
    // Console lines; the journal channel (logging.target=journal) comes with
    // the systemd integration. Times are UTC, like the API's.
    Poco::AutoPtr<Poco::PatternFormatter> formatter(
        new Poco::PatternFormatter("%Y-%m-%dT%H:%M:%S.%iZ %q %s: %t"));
    formatter->setProperty("times", "UTC");
    Poco::AutoPtr<Poco::ConsoleChannel> console(new Poco::ConsoleChannel);
    Poco::AutoPtr<Poco::FormattingChannel> channel(new Poco::FormattingChannel(formatter, console));
    Poco::Logger::setChannel("", channel);  // every logger, including those made already
    setLogLevel(settings.level);
}

void setLogLevel(const std::string& level)
{
    Poco::Logger::setLevel("", Poco::Logger::parseLevel(level));
}

}  // namespace orderpay
