#include "http/ApiHandler.h"

#include "domain/Errors.h"
#include "http/Problem.h"
#include "logging/Log.h"
#include "metrics/Metrics.h"

#include <Poco/Net/NetException.h>
#include <Poco/Timespan.h>

#include <chrono>

namespace orderpay::http {

ApiHandler::ApiHandler(Service& service, std::string route, bool requiresAuth)
    : service_(service), route_(std::move(route)), requiresAuth_(requiresAuth)
{
}

void ApiHandler::handleRequest(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response)
{
    const auto started = std::chrono::steady_clock::now();
    auto answer = [&](const Problem& p) {
        if (!response.sent()) sendProblem(response, p);
    };
    try {
        if (requiresAuth_ && !service_.auth.allows(request)) throw ProblemException(Problem::unauthorized());
        handle(request, response);
    } catch (const ProblemException& e) {
        answer(e.problem);
    } catch (const StoreUnavailable& e) {
        // Not logged per request: the Committer logs when the database
        // starts and stops refusing writes.
        answer(Problem::unavailable(e.what(), 5));
    } catch (const NotFound& e) {
        answer(Problem::notFound(e.what()));
    } catch (const Conflict& e) {
        answer(Problem::conflict(e.what()));
    } catch (const IdempotencyMismatch& e) {
        answer(Problem::validation({{"Idempotency-Key", e.what()}}));
    } catch (const Poco::TimeoutException&) {
        answer(Problem::requestTimeout());
    } catch (const Poco::Net::NetException& e) {
        // The client went away or sent garbage mid-body; try to say so.
        answer(Problem::badRequest(e.displayText()));
    } catch (const std::exception& e) {
        static Poco::Logger& log = Poco::Logger::get("orderpay.http");
        logLine(log, Poco::Message::PRIO_ERROR,
                "unexpected error on " + request.getMethod() + " " + request.getURI() + ": " + e.what());
        answer(Problem::internal());
    }
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - started;
    Metrics::instance().observeRequest(route_, static_cast<int>(response.getStatus()), elapsed.count());
}

NotFoundHandler::NotFoundHandler(Service& service) : ApiHandler(service, "unmatched", true) {}

void NotFoundHandler::handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse&)
{
    throw ProblemException(Problem::notFound("no resource at " + request.getURI()));
}

MethodNotAllowedHandler::MethodNotAllowedHandler(Service& service, std::string route, std::string allow)
    : ApiHandler(service, std::move(route), true), allow_(std::move(allow))
{
}

void MethodNotAllowedHandler::handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse&)
{
    throw ProblemException(Problem::methodNotAllowed(allow_));
}

}  // namespace orderpay::http
