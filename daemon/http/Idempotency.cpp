#include "http/Idempotency.h"

#include "domain/Validation.h"
#include "http/Json.h"
#include "http/Problem.h"

#include <Poco/DigestEngine.h>
#include <Poco/SHA2Engine.h>

namespace orderpay::http {

std::optional<IdempotencyRecord> idempotencyFor(const Poco::Net::HTTPServerRequest& request, const std::string& body,
                                                std::chrono::milliseconds ttl)
{
    if (!request.has("Idempotency-Key")) return std::nullopt;
    const std::string key = request.get("Idempotency-Key");
    if (!isIdempotencyKey(key)) {
        throw ProblemException(
            Problem::validation({{"Idempotency-Key", "must be 1 to 255 printable ASCII characters"}}));
    }
    Poco::SHA2Engine engine(Poco::SHA2Engine::SHA_256);
    engine.update(request.getMethod());
    engine.update(' ');
    engine.update(request.getURI());
    engine.update('\n');
    engine.update(body);
    IdempotencyRecord record;
    record.key = key;
    record.requestHash = Poco::DigestEngine::digestToHex(engine.digest());
    record.ttlMillis = ttl.count();
    return record;
}

void sendAnswer(Poco::Net::HTTPServerResponse& response, const StoredAnswer& answer, bool replayed)
{
    if (!answer.location.empty()) response.set("Location", answer.location);
    if (replayed) response.set("Idempotent-Replayed", "true");
    sendJson(response, answer.status, answer.body);
}

}  // namespace orderpay::http
