// poco_baseline: the yardstick the performance targets are measured against - a Poco HTTPServer
// whose handler reads the request body and answers 202 with a short JSON
// body, nothing else (no parsing, no store, no queue). bench/run drives it
// with the same wrk load as POST /orders, so that every run says what the
// machine it ran on can do at all, next to what orderpayd does there.
//
//   poco_baseline PORT        (127.0.0.1; runs until SIGTERM or SIGINT)
//
// Poco's server gives each keep-alive connection a thread for as long as it
// is open, so the pool has room for wrk's 64 connections and more.
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/ThreadPool.h>
#include <Poco/Util/ServerApplication.h>

#include <cstdlib>
#include <iostream>
#include <istream>
#include <string>
#include <vector>

namespace {

class Accepted : public Poco::Net::HTTPRequestHandler {
public:
    void handleRequest(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override
    {
        std::istream& body = request.stream();
        char sink[4096];
        while (body.read(sink, sizeof sink)) {
        }
        static const std::string answer = R"({"status":"accepted"})";
        response.setStatus(Poco::Net::HTTPResponse::HTTP_ACCEPTED);
        response.setContentType("application/json");
        response.setContentLength(static_cast<std::streamsize>(answer.size()));
        response.send() << answer;
    }
};

class Factory : public Poco::Net::HTTPRequestHandlerFactory {
public:
    Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest&) override
    {
        return new Accepted;
    }
};

class Baseline : public Poco::Util::ServerApplication {
protected:
    int main(const std::vector<std::string>& args) override
    {
        if (args.size() != 1) {
            std::cerr << "usage: poco_baseline PORT\n";
            return EXIT_USAGE;
        }
        const auto port = static_cast<Poco::UInt16>(std::stoi(args[0]));
        Poco::Net::ServerSocket socket(Poco::Net::SocketAddress("127.0.0.1", port), 1024);
        auto* params = new Poco::Net::HTTPServerParams;
        params->setMaxThreads(128);
        params->setMaxQueued(1024);
        params->setKeepAlive(true);
        params->setMaxKeepAliveRequests(0);  // unlimited, as orderpayd
        Poco::ThreadPool pool(16, 128);
        Poco::Net::HTTPServer server(new Factory, pool, socket, params);
        server.start();
        waitForTerminationRequest();
        server.stopAll(true);
        return EXIT_OK;
    }
};

}  // namespace

int main(int argc, char** argv)
{
    Baseline app;
    return app.run(argc, argv);
}
