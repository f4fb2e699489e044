// The daemon's HTTP API as orderpayctl needs it: one request per call on a
// fresh connection, with the token and a timeout, and the answer turned into
// JSON or into the error main() reports.
#pragma once

#include "Endpoint.h"

#include <Poco/Dynamic/Var.h>
#include <Poco/JSON/Object.h>

#include <chrono>
#include <string>

namespace orderpayctl {

struct ApiResponse {
    int status = 0;
    std::string reason; // the status line's text
    std::string contentType;
    std::string body;
    std::string method;
    std::string path;
};

class ApiClient {
public:
    explicit ApiClient(Endpoint endpoint, std::chrono::seconds timeout = std::chrono::seconds(10));

    // Throws Unreachable when no answer comes (refused, timeout, unknown host).
    ApiResponse send(const std::string& method, const std::string& path, const std::string& jsonBody = {}) const;

    // The answer's JSON document; throws ApiError for an error status (with
    // the problem's title and detail) or a body that is not JSON.
    Poco::Dynamic::Var json(const ApiResponse& response) const;
    // The same, for an answer that must be a JSON object.
    Poco::JSON::Object::Ptr object(const ApiResponse& response) const;
    // Throws the ApiError `response` stands for (call it for a status >= 400).
    [[noreturn]] void fail(const ApiResponse& response) const;

    const Endpoint& endpoint() const { return endpoint_; }

private:
    Endpoint endpoint_;
    std::chrono::seconds timeout_;
};

// Parses JSON, keeping each object's keys in document order.
Poco::Dynamic::Var parseJson(const std::string& text);

} // namespace orderpayctl
