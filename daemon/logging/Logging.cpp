#include "logging/Logging.h"

#include "logging/JournalChannel.h"
#include "systemd/Notifier.h"

#include <Poco/AutoPtr.h>
#include <Poco/ConsoleChannel.h>
#include <Poco/FormattingChannel.h>
#include <Poco/Logger.h>
#include <Poco/PatternFormatter.h>

namespace orderpay {

void setupLogging(const LoggingSettings& settings)
{
    const bool journal =
        settings.target == "journal" || (settings.target == "auto" && systemd::stderrIsJournal());
    Poco::AutoPtr<Poco::Channel> channel;
    if (journal) {
        channel = new JournalChannel(settings.instance);
    } else {
        // Console lines; times are UTC, like the API's.
        Poco::AutoPtr<Poco::PatternFormatter> formatter(
            new Poco::PatternFormatter("%Y-%m-%dT%H:%M:%S.%iZ %q %s: %t"));
        formatter->setProperty("times", "UTC");
        Poco::AutoPtr<Poco::ConsoleChannel> console(new Poco::ConsoleChannel);
        channel = new Poco::FormattingChannel(formatter, console);
    }
    Poco::Logger::setChannel("", channel);  // every logger, including those made already
    setLogLevel(settings.level);
}

void setLogLevel(const std::string& level)
{
    Poco::Logger::setLevel("", Poco::Logger::parseLevel(level));
}

}  // namespace orderpay
