#include "ApiClient.h"

#include "Errors.h"

#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/ParseHandler.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/StreamCopier.h>
#include <Poco/Timespan.h>

#include <sstream>

namespace orderpayctl {

Poco::Dynamic::Var parseJson(const std::string& text)
{
    Poco::JSON::Parser parser(new Poco::JSON::ParseHandler(true));
    return parser.parse(text);
}

ApiClient::ApiClient(Endpoint endpoint, std::chrono::seconds timeout)
    : endpoint_(std::move(endpoint)), timeout_(timeout)
{
}

ApiResponse ApiClient::send(const std::string& method, const std::string& path, const std::string& jsonBody) const
{
    ApiResponse out;
    out.method = method;
    out.path = path;
    try {
        Poco::Net::HTTPClientSession session(endpoint_.host, endpoint_.port);
        // One timeout for connecting, sending and receiving: a hung daemon
        // must not hang the operator's shell.
        session.setTimeout(Poco::Timespan(static_cast<long>(timeout_.count()), 0));
        session.setKeepAlive(false);
        Poco::Net::HTTPRequest request(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
        request.set("Accept", "application/json, application/problem+json");
        request.set("User-Agent", "orderpayctl/" ORDERPAY_VERSION);
        if (!endpoint_.token.empty()) request.set("Authorization", "Bearer " + endpoint_.token);
        if (method == "POST" || method == "PUT" || method == "PATCH" || !jsonBody.empty()) {
            request.setContentType("application/json");
            request.setContentLength(static_cast<std::streamsize>(jsonBody.size()));
        }
        session.sendRequest(request) << jsonBody;
        Poco::Net::HTTPResponse response;
        std::istream& in = session.receiveResponse(response);
        std::ostringstream body;
        Poco::StreamCopier::copyStream(in, body);
        out.status = static_cast<int>(response.getStatus());
        out.reason = response.getReason();
        out.contentType = response.getContentType();
        out.body = body.str();
    } catch (const Poco::TimeoutException&) {
        throw Unreachable("orderpayd at " + endpoint_.url + " did not answer within " +
                          std::to_string(timeout_.count()) + " s (" + method + " " + path + ")");
    } catch (const Poco::Net::ConnectionRefusedException&) {
        throw Unreachable("cannot connect to orderpayd at " + endpoint_.url +
                          ": connection refused (is it running? systemctl status orderpay; or give --url)");
    } catch (const Poco::Net::HostNotFoundException& e) {
        throw Unreachable("cannot connect to orderpayd at " + endpoint_.url + ": unknown host (" + e.message() + ")");
    } catch (const Poco::Net::NoAddressFoundException& e) {
        throw Unreachable("cannot connect to orderpayd at " + endpoint_.url + ": no address (" + e.message() + ")");
    } catch (const Poco::IOException& e) {
        // NetException, a reset or a connection closed before the answer.
        throw Unreachable("cannot talk to orderpayd at " + endpoint_.url + ": " + e.displayText());
    }
    return out;
}

void ApiClient::fail(const ApiResponse& r) const
{
    std::string message;
    std::vector<std::string> hints;
    Poco::JSON::Object::Ptr problem;
    try {
        if (r.contentType.find("json") != std::string::npos) {
            problem = parseJson(r.body).extract<Poco::JSON::Object::Ptr>();
        }
    } catch (const std::exception&) {
        // Not a problem document: described from the status line below.
    }
    if (problem && problem->has("title")) {
        message = problem->optValue<std::string>("title", "");
        const std::string detail = problem->optValue<std::string>("detail", "");
        if (!detail.empty()) message += ": " + detail;
        // A validation problem's detail names only the first field.
        if (auto errors = problem->getArray("errors"); errors && errors->size() > 1) {
            for (std::size_t i = 0; i < errors->size(); ++i) {
                auto e = errors->getObject(static_cast<unsigned>(i));
                if (e)
                    hints.push_back(e->optValue<std::string>("field", "?") + ": " +
                                    e->optValue<std::string>("message", ""));
            }
        }
    } else {
        message = "HTTP " + std::to_string(r.status) + " " + r.reason + " from " + endpoint_.url + " for " + r.method +
                  " " + r.path;
        if (!r.body.empty()) hints.push_back(r.body.substr(0, 300));
    }
    // Say which token was sent: 401/403 are almost always the wrong file.
    if (r.status == 401 || r.status == 403) {
        if (!endpoint_.token.empty()) {
            hints.push_back("sent " + endpoint_.tokenOrigin);
        } else {
            hints.push_back("no token was sent: give --token-file FILE (the daemon's http.auth.admin_token_file)");
        }
        for (const auto& p : endpoint_.tokenProblems) hints.push_back(p);
    }
    throw ApiError(message, std::move(hints));
}

Poco::Dynamic::Var ApiClient::json(const ApiResponse& r) const
{
    if (r.status >= 400) fail(r);
    try {
        return parseJson(r.body);
    } catch (const Poco::Exception& e) {
        throw ApiError("orderpayd at " + endpoint_.url + " answered " + r.method + " " + r.path +
                       " with something that is not JSON (" + e.message() + ")");
    }
}

Poco::JSON::Object::Ptr ApiClient::object(const ApiResponse& r) const
{
    const Poco::Dynamic::Var v = json(r);
    if (v.type() != typeid(Poco::JSON::Object::Ptr))
        throw ApiError("orderpayd at " + endpoint_.url + " answered " + r.method + " " + r.path +
                       " with JSON that is not an object");
    return v.extract<Poco::JSON::Object::Ptr>();
}

} // namespace orderpayctl
