#include "http/Problem.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>

#include <sstream>

namespace orderpay::http {

using Poco::Net::HTTPResponse;

Problem Problem::malformedJson(const std::string& detail)
{
    return {400, "/problems/malformed-json", "Request body is not valid JSON", detail, {}, {}, false};
}

Problem Problem::badRequest(const std::string& detail)
{
    return {400, "/problems/bad-request", "The HTTP request could not be read", detail, {}, {}, true};
}

Problem Problem::unauthorized()
{
    return {401,
            "/problems/unauthorized",
            "Authentication required",
            "send a valid token as 'Authorization: Bearer <token>'",
            {},
            {{"WWW-Authenticate", "Bearer realm=\"orderpay\""}},
            false};
}

Problem Problem::forbidden()
{
    return {403,
            "/problems/forbidden",
            "Not allowed with this token",
            "this route needs a token of http.auth.admin_token_file; a client token does not open it",
            {},
            {},
            false};
}

Problem Problem::notFound(const std::string& detail)
{
    return {404, "/problems/not-found", "Not found", detail, {}, {}, false};
}

Problem Problem::methodNotAllowed(const std::string& allow)
{
    return {405,
            "/problems/method-not-allowed",
            "Method not allowed",
            "this resource supports " + allow,
            {},
            {{"Allow", allow}},
            false};
}

Problem Problem::conflict(const std::string& detail)
{
    return {409, "/problems/conflict", "The request conflicts with the order's state", detail, {}, {}, false};
}

Problem Problem::payloadTooLarge(std::size_t limit)
{
    // The rest of the body is never read, so the connection cannot be reused.
    return {413,
            "/problems/payload-too-large",
            "Request body too large",
            "the body must be at most " + std::to_string(limit) + " bytes (http.max_body_bytes)",
            {},
            {},
            true};
}

Problem Problem::unsupportedMediaType(const std::string& got)
{
    return {415,
            "/problems/unsupported-media-type",
            "Unsupported media type",
            "the body must be application/json" + (got.empty() ? std::string() : ", not " + got),
            {},
            {},
            false};
}

Problem Problem::validation(std::vector<FieldError> errors)
{
    std::string detail;
    if (!errors.empty()) {
        detail = errors.front().field.empty() ? errors.front().message
                                              : errors.front().field + " " + errors.front().message;
        if (errors.size() > 1) detail += " (and " + std::to_string(errors.size() - 1) + " more)";
    }
    return {422, "/problems/validation", "Request body failed validation", detail, std::move(errors), {}, false};
}

Problem Problem::unavailable(const std::string& detail, int retryAfterSeconds)
{
    return {503,
            "/problems/unavailable",
            "The service cannot store this request now",
            detail + "; nothing was stored, retry later (with the same Idempotency-Key)",
            {},
            {{"Retry-After", std::to_string(retryAfterSeconds)}},
            false};
}

Problem Problem::requestTimeout()
{
    return {408,
            "/problems/request-timeout",
            "Request timeout",
            "the request was not received in full within http.read_timeout",
            {},
            {},
            true};
}

Problem Problem::internal()
{
    return {500, "/problems/internal", "Internal error", "the request failed unexpectedly; the log has details",
            {}, {}, false};
}

std::string problemBody(const Problem& problem)
{
    // Details may echo what the client sent (a request target, a header, the
    // byte a JSON parser stumbled on): the answer must stay valid UTF-8 JSON.
    Poco::JSON::Object body(Poco::JSON_PRESERVE_KEY_ORDER);
    body.set("type", problem.type);
    body.set("title", problem.title);
    body.set("status", problem.status);
    body.set("detail", toValidUtf8(problem.detail));
    if (!problem.errors.empty()) {
        Poco::JSON::Array errors;
        for (const auto& e : problem.errors) {
            Poco::JSON::Object o(Poco::JSON_PRESERVE_KEY_ORDER);
            o.set("field", toValidUtf8(e.field));
            o.set("message", toValidUtf8(e.message));
            errors.add(o);
        }
        body.set("errors", errors);
    }
    std::ostringstream out;
    body.stringify(out);
    return out.str();
}

void sendProblem(Poco::Net::HTTPServerResponse& response, const Problem& problem)
{
    const std::string text = problemBody(problem);
    response.setStatusAndReason(static_cast<HTTPResponse::HTTPStatus>(problem.status));
    response.setContentType("application/problem+json");
    for (const auto& [name, value] : problem.headers) response.set(name, value);
    if (problem.closeConnection) response.setKeepAlive(false);
    response.setContentLength(static_cast<std::streamsize>(text.size()));
    response.send() << text;
}

}  // namespace orderpay::http
