#pragma once

#include "domain/Validation.h"

#include <Poco/Net/HTTPServerResponse.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace orderpay::http {

/// An RFC 9457 problem: every error answer of the API is one. The `type`
/// is a relative reference documented in docs/api.md.
struct Problem {
    int status = 500;
    std::string type;
    std::string title;
    std::string detail;
    std::vector<FieldError> errors;
    std::vector<std::pair<std::string, std::string>> headers;
    bool closeConnection = false;

    static Problem malformedJson(const std::string& detail);
    static Problem badRequest(const std::string& detail);
    static Problem unauthorized();
    static Problem forbidden();
    static Problem notFound(const std::string& detail);
    static Problem methodNotAllowed(const std::string& allow);
    static Problem conflict(const std::string& detail);
    static Problem payloadTooLarge(std::size_t limit);
    static Problem unsupportedMediaType(const std::string& got);
    static Problem validation(std::vector<FieldError> errors);
    static Problem unavailable(const std::string& detail, int retryAfterSeconds);
    static Problem requestTimeout();
    static Problem internal();
};

/// Thrown by handlers and helpers; the handler base answers it.
class ProblemException : public std::runtime_error {
public:
    explicit ProblemException(Problem p) : std::runtime_error(p.detail), problem(std::move(p)) {}
    Problem problem;
};

/// The application/problem+json body of `problem`.
std::string problemBody(const Problem& problem);
void sendProblem(Poco::Net::HTTPServerResponse& response, const Problem& problem);

}  // namespace orderpay::http
