// The fuzz targets as plain functions: libFuzzer calls them (FuzzEntry.cpp,
// clang builds with ORDERPAY_FUZZ), and the replay test feeds them every file
// of the seed corpus and of the regressions in every build (ReplayTest.cpp).
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace orderpay::fuzz {

/// A property of the code under test does not hold for this input. The
/// fuzzer entry turns it into a crash (so libFuzzer saves the input); the
/// replay test reports it with the file's name.
class Violation : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

/// A POST /orders or /payment/confirm body: parseJson, then validateOrder
/// and validatePayment, then what the handlers do with the result (render,
/// store the metadata as JSON text, answer a problem).
void requestJson(std::string_view input);

/// "METHOD\nrequest-target": route(), parseListQuery() and the problem a
/// client gets for an unknown path or a bad query.
void routing(std::string_view input);

/// A queue message body, as the embedded broker's row or an AMQP delivery
/// hands it to the consumers: decodeOrderId, decodePaymentId, and the outbox
/// headers' JSON text (stringMapFromJson).
void queueMessage(std::string_view input);

struct Target {
    std::string name;  // also the folder under corpus/ and regressions/
    void (*run)(std::string_view);
};
const std::vector<Target>& targets();

}  // namespace orderpay::fuzz
