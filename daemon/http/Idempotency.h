#pragma once

#include "store/Records.h"

#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>

#include <chrono>
#include <optional>
#include <string>

namespace orderpay::http {

/// The Idempotency-Key of a POST, if it has one: validated (422 if
/// malformed), with a digest of method, path and body to tell a replay from
/// a reuse of the key for another request.
std::optional<IdempotencyRecord> idempotencyFor(const Poco::Net::HTTPServerRequest& request, const std::string& body,
                                                std::chrono::milliseconds ttl);

/// Sends `answer`, marked as a replay when `replayed`.
void sendAnswer(Poco::Net::HTTPServerResponse& response, const StoredAnswer& answer, bool replayed);

}  // namespace orderpay::http
