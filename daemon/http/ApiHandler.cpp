#include "http/ApiHandler.h"

#include "domain/Errors.h"
#include "http/Idempotency.h"
#include "http/Problem.h"
#include "logging/Log.h"
#include "metrics/Metrics.h"

#include <Poco/Net/NetException.h>
#include <Poco/Timespan.h>

#include <chrono>
#include <stdexcept>

namespace orderpay::http {

ApiHandler::ApiHandler(Service& service, std::string route, Access access)
    : service_(service), route_(std::move(route)), access_(access)
{
}

void ApiHandler::handleRequest(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response)
{
    started_ = std::chrono::steady_clock::now();
    try {
        if (access_ != Access::Open) {
            const auto verdict = service_.auth.check(
                request, access_ == Access::Admin ? Auth::Access::Admin : Auth::Access::Client);
            if (verdict == Auth::Verdict::Unauthorized) throw ProblemException(Problem::unauthorized());
            if (verdict == Auth::Verdict::Forbidden) throw ProblemException(Problem::forbidden());
        }
        handle(request, response);
    } catch (const std::exception& e) {
        if (deferred_) {
            // The answer is on its way: nothing may be sent here.
            static Poco::Logger& log = Poco::Logger::get("orderpay.http");
            logLine(log, Poco::Message::PRIO_ERROR, std::string("error after an answer was deferred: ") + e.what());
            return;
        }
        answerFailure(response, std::current_exception(), request.getMethod() + " " + request.getURI());
    }
    if (!deferred_) record(response);
}

void ApiHandler::resume(Poco::Net::HTTPServerResponse& response, const Deferral::Answer& answer)
{
    try {
        answer(response);
    } catch (const std::exception&) {
        answerFailure(response, std::current_exception(), route_);
    }
    record(response);
}

Deferral& ApiHandler::defer()
{
    if (!deferral_) throw std::logic_error("a handler that writes needs the server's Deferral");
    if (!deferral_->expect()) {
        throw ProblemException(
            Problem::unavailable("too many requests are waiting for the database (http.max_queued)", 1));
    }
    deferred_ = true;
    return *deferral_;
}

void ApiHandler::answerWhenWritten(StoredAnswer fresh, std::function<void()> accepted,
                                   const std::function<void(ApiStore::Written)>& write)
{
    Deferral& deferral = defer();
    ApiStore::Written then = [&deferral, fresh = std::move(fresh), accepted = std::move(accepted)](
                                   std::optional<StoredAnswer> replay, std::exception_ptr error) {
        deferral.answer([fresh, accepted, replay = std::move(replay), error](Poco::Net::HTTPServerResponse& r) {
            if (error) std::rethrow_exception(error);
            if (replay) return sendAnswer(r, *replay, true);
            if (accepted) accepted();
            sendAnswer(r, fresh, false);
        });
    };
    try {
        write(then);
    } catch (...) {
        then(std::nullopt, std::current_exception());  // it never reached the store
    }
}

void ApiHandler::answerWhenDone(Deferral::Answer respond, const std::function<void(ApiStore::Done)>& write)
{
    Deferral& deferral = defer();
    ApiStore::Done then = [&deferral, respond = std::move(respond)](std::exception_ptr error) {
        deferral.answer([respond, error](Poco::Net::HTTPServerResponse& r) {
            if (error) std::rethrow_exception(error);
            respond(r);
        });
    };
    try {
        write(then);
    } catch (...) {
        then(std::current_exception());  // it never reached the store
    }
}

void ApiHandler::answerFailure(Poco::Net::HTTPServerResponse& response, const std::exception_ptr& error,
                               const std::string& request)
{
    auto answer = [&](const Problem& p) {
        if (!response.sent()) sendProblem(response, p);
    };
    try {
        std::rethrow_exception(error);
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
        logLine(log, Poco::Message::PRIO_ERROR, "unexpected error on " + request + ": " + e.what());
        answer(Problem::internal());
    }
}

void ApiHandler::record(const Poco::Net::HTTPServerResponse& response) const
{
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - started_;
    Metrics::instance().observeRequest(route_, static_cast<int>(response.getStatus()), elapsed.count());
}

NotFoundHandler::NotFoundHandler(Service& service) : ApiHandler(service, "unmatched", Access::Client) {}

void NotFoundHandler::handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse&)
{
    throw ProblemException(Problem::notFound("no resource at " + request.getURI()));
}

MethodNotAllowedHandler::MethodNotAllowedHandler(Service& service, std::string route, std::string allow)
    : ApiHandler(service, std::move(route), Access::Client), allow_(std::move(allow))
{
}

void MethodNotAllowedHandler::handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse&)
{
    throw ProblemException(Problem::methodNotAllowed(allow_));
}

}  // namespace orderpay::http
