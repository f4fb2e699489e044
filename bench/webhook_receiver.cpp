// webhook_receiver: the receiving end of the webhook delivery benchmark - a Poco HTTPServer that
// reads each request's body, answers 204 at once and counts, with nothing else (no signature
// check), so that what a run measures is orderpayd's sending, not the receiver.
//
//   webhook_receiver PORT [PORT_FILE]   (127.0.0.1; PORT 0: any free port, written to PORT_FILE
//                                        once listening; runs until SIGTERM or SIGINT)
//
// GET /_count answers {"count": n, "seconds": s, "rate": n/s} (not counted itself), where s runs
// from the first counted request to the last; on SIGTERM or SIGINT the same line goes to stdout.
#include <Poco/File.h>
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

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <istream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// Nanoseconds since the clock's epoch of the first and the latest counted request (0: none yet).
struct Counter {
    std::atomic<std::uint64_t> count{0};
    std::atomic<std::int64_t> firstNs{0};
    std::atomic<std::int64_t> lastNs{0};

    void add()
    {
        const std::int64_t now = Clock::now().time_since_epoch().count();
        std::int64_t none = 0;
        firstNs.compare_exchange_strong(none, now, std::memory_order_relaxed);
        lastNs.store(now, std::memory_order_relaxed);
        count.fetch_add(1, std::memory_order_relaxed);
    }

    std::string summary() const
    {
        const auto n = count.load();
        const double seconds =
            static_cast<double>(lastNs.load() - firstNs.load()) * Clock::period::num / Clock::period::den;
        std::ostringstream s;
        s << R"({"count": )" << n << R"(, "seconds": )" << seconds << R"(, "rate": )"
          << (seconds > 0 ? static_cast<double>(n) / seconds : 0.0) << "}";
        return s.str();
    }
};

class Receive : public Poco::Net::HTTPRequestHandler {
public:
    explicit Receive(Counter& counter) : counter_(counter) {}

    void handleRequest(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override
    {
        std::istream& body = request.stream();
        char sink[4096];
        while (body.read(sink, sizeof sink)) {
        }
        if (request.getMethod() == "GET" && request.getURI() == "/_count") {
            const std::string answer = counter_.summary() + "\n";
            response.setContentType("application/json");
            response.setContentLength(static_cast<std::streamsize>(answer.size()));
            response.send() << answer;
            return;
        }
        counter_.add();
        response.setStatus(Poco::Net::HTTPResponse::HTTP_NO_CONTENT);
        response.setContentLength(0);
        response.send();
    }

private:
    Counter& counter_;
};

class Factory : public Poco::Net::HTTPRequestHandlerFactory {
public:
    explicit Factory(Counter& counter) : counter_(counter) {}

    Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest&) override
    {
        return new Receive(counter_);
    }

private:
    Counter& counter_;
};

class WebhookReceiver : public Poco::Util::ServerApplication {
protected:
    int main(const std::vector<std::string>& args) override
    {
        if (args.empty() || args.size() > 2) {
            std::cerr << "usage: webhook_receiver PORT [PORT_FILE]\n";
            return EXIT_USAGE;
        }
        const auto port = static_cast<Poco::UInt16>(std::stoi(args[0]));
        Poco::Net::ServerSocket socket(Poco::Net::SocketAddress("127.0.0.1", port), 1024);
        auto* params = new Poco::Net::HTTPServerParams;
        params->setMaxThreads(256);
        params->setMaxQueued(1024);
        params->setKeepAlive(true);
        params->setMaxKeepAliveRequests(0);  // unlimited
        Poco::ThreadPool pool(16, 256);
        Counter counter;
        Poco::Net::HTTPServer server(new Factory(counter), pool, socket, params);
        server.start();
        if (args.size() == 2) {
            // Written whole, then renamed: a reader never sees a partial port.
            const std::string tmp = args[1] + ".tmp";
            std::ofstream(tmp) << socket.address().port() << "\n";
            Poco::File(tmp).renameTo(args[1]);
        }
        waitForTerminationRequest();
        server.stopAll(true);
        std::cout << counter.summary() << std::endl;
        return EXIT_OK;
    }
};

}  // namespace

int main(int argc, char** argv)
{
    WebhookReceiver app;
    return app.run(argc, argv);
}
