#include "Check.h"

#include "domain/Errors.h"
#include "domain/Ids.h"
#include "store/JsonText.h"
#include "work/OrderProcessor.h"

#include <Poco/Exception.h>

namespace orderpay::fuzz {
namespace {

/// Either a valid id of its kind or PoisonMessage (which dead-letters the
/// message); any other exception would be retried as if it might pass.
void checkDecode(const std::string& body, std::string (*decode)(const std::string&), const char* prefix)
{
    try {
        const std::string id = decode(body);
        check(ids::isValid(id, prefix), std::string("decoded an invalid ") + prefix + " id: " + id);
    } catch (const PoisonMessage&) {
    }
}

}  // namespace

void queueMessage(std::string_view input)
{
    const std::string body(input);
    checkDecode(body, OrderProcessor::decodeOrderId, "ord_");
    checkDecode(body, PaymentProcessor::decodePaymentId, "pay_");

    // The outbox's headers column: stringMapFromJson throws Poco::Exception
    // for anything but a JSON object, and a map it returns survives the way
    // back (stringMapToJson) unchanged.
    std::map<std::string, std::string> headers;
    try {
        headers = stringMapFromJson(body);
    } catch (const Poco::Exception&) {
        return;
    }
    check(stringMapFromJson(stringMapToJson(headers)) == headers, "headers changed through JSON text: " + body);
}

}  // namespace orderpay::fuzz
