#include "logging/JournalChannel.h"

#include <Poco/Message.h>

#include <systemd/sd-journal.h>
#include <sys/uio.h>

#include <string>
#include <vector>

namespace orderpay {

int JournalChannel::syslogPriority(int pocoPriority)
{
    switch (pocoPriority) {
    case Poco::Message::PRIO_FATAL: return 2;     // LOG_CRIT
    case Poco::Message::PRIO_CRITICAL: return 2;  // LOG_CRIT
    case Poco::Message::PRIO_ERROR: return 3;
    case Poco::Message::PRIO_WARNING: return 4;
    case Poco::Message::PRIO_NOTICE: return 5;
    case Poco::Message::PRIO_INFORMATION: return 6;
    default: return 7;  // debug, trace
    }
}

void JournalChannel::log(const Poco::Message& message)
{
    std::vector<std::string> fields;
    fields.reserve(8);
    fields.push_back("MESSAGE=" + message.getText());
    fields.push_back("PRIORITY=" + std::to_string(syslogPriority(message.getPriority())));
    fields.push_back("SYSLOG_IDENTIFIER=orderpayd");
    fields.push_back("ORDERPAY_LOGGER=" + message.getSource());
    if (!instance_.empty()) fields.push_back("INSTANCE=" + instance_);
    for (const char* key : {"ORDER_ID", "PAYMENT_ID", "QUEUE", "MESSAGE_ID"}) {
        if (message.has(key)) fields.push_back(std::string(key) + "=" + message.get(key));
    }
    std::vector<iovec> iov;
    iov.reserve(fields.size());
    for (auto& f : fields) iov.push_back(iovec{f.data(), f.size()});
    sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
}

}  // namespace orderpay
