#pragma once

#include <Poco/Channel.h>

#include <string>

namespace orderpay {

/// A Poco channel that writes to the systemd journal natively
/// (sd_journal_sendv): PRIORITY mapped from the Poco priority, the logger
/// name, and every parameter of the message (ORDER_ID, PAYMENT_ID, QUEUE,
/// MESSAGE_ID) as a journal field, so `journalctl -u orderpay ORDER_ID=…`
/// shows one order's story.
class JournalChannel : public Poco::Channel {
public:
    /// `instance` (instance.name) goes into every record as INSTANCE=.
    explicit JournalChannel(std::string instance = {}) : instance_(std::move(instance)) {}

    void log(const Poco::Message& message) override;

    /// Poco priority (1 fatal .. 8 trace) to syslog priority (0 emerg .. 7 debug).
    static int syslogPriority(int pocoPriority);

private:
    std::string instance_;
};

}  // namespace orderpay
