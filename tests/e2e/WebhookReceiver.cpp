#include "WebhookReceiver.h"

#include <catch2/catch.hpp>

#include <Poco/JSON/Array.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/URI.h>

#include <cstring>
#include <iterator>

#include <csignal>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace e2e {
namespace {

std::string receiverScript() { return sourceDir() + "/tests/e2e/webhook_receiver.py"; }

pid_t spawn(const std::vector<std::string>& args, const std::string& output)
{
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawn_file_actions_addopen(&actions, 1, output.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ::posix_spawn_file_actions_adddup2(&actions, 1, 2);
    ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid = -1;
    const int rc = ::posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    ::posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) FAIL("cannot start " << args[0] << ": " << std::strerror(rc));
    return pid;
}

}  // namespace

Poco::JSON::Object::Ptr WebhookReceiver::Entry::json() const
{
    return parseJson(body).extract<Poco::JSON::Object::Ptr>();
}

WebhookReceiver::WebhookReceiver(const std::string& tlsCert, const std::string& tlsKey) : tls_(!tlsCert.empty())
{
    const std::string portFile = dir_.path() + "/port";
    std::vector<std::string> args{"python3", receiverScript(), "--port-file", portFile};
    if (tls_) args.insert(args.end(), {"--tls-cert", tlsCert, "--tls-key", tlsKey});
    pid_ = spawn(args, dir_.path() + "/receiver.log");
    const bool up = eventually(
        [&] {
            const std::string text = readFile(portFile);
            if (text.empty()) return false;
            port_ = static_cast<unsigned short>(std::stoi(text));
            return true;
        },
        15s);
    if (!up) FAIL("the webhook receiver did not start: " << readFile(dir_.path() + "/receiver.log"));
}

WebhookReceiver::~WebhookReceiver()
{
    if (pid_ > 0) {
        ::kill(pid_, SIGTERM);
        int status = 0;
        ::waitpid(pid_, &status, 0);
    }
}

std::string WebhookReceiver::url(const std::string& path) const
{
    return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) + path;
}

namespace {

// The control API, past HttpClient (whose answers are checked against the
// daemon's OpenAPI description): Poco's client for HTTP, curl for HTTPS.
Response control(bool tls, unsigned short port, const std::string& method, const std::string& path,
                 const std::string& body)
{
    Response r;
    if (!tls) {
        Poco::Net::HTTPClientSession session("127.0.0.1", port);
        session.setTimeout(Poco::Timespan(10, 0));
        Poco::Net::HTTPRequest request(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
        request.setContentType("application/json");
        request.setContentLength(static_cast<std::streamsize>(body.size()));
        session.sendRequest(request) << body;
        Poco::Net::HTTPResponse response;
        std::istream& in = session.receiveResponse(response);
        r.status = response.getStatus();
        r.body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        return r;
    }
    const std::string command = "printf '%s' '" + body +
                                "' | curl -sk -X " + method + " -H 'Content-Type: application/json' --data-binary @- " +
                                "-w '\\n%{http_code}' 'https://127.0.0.1:" + std::to_string(port) + path + "'";
    FILE* pipe = ::popen(command.c_str(), "r");
    REQUIRE(pipe);
    std::string out;
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
    ::pclose(pipe);
    const auto nl = out.rfind('\n');
    REQUIRE(nl != std::string::npos);
    r.status = std::atoi(out.substr(nl + 1).c_str());
    r.body = out.substr(0, nl);
    return r;
}

}  // namespace

void WebhookReceiver::configure(const std::string& path, const std::string& mode,
                                const std::vector<std::string>& secrets, int failures,
                                const std::string& retryAfter) const
{
    std::string list;
    for (const auto& s : secrets) list += (list.empty() ? "" : ",") + quote(s);
    const auto r = control(tls_, port_, "POST", "/_control/paths",
                           "{\"path\":" + quote(path) + ",\"mode\":" + quote(mode) + ",\"failures\":" +
                               std::to_string(failures) + ",\"retry_after\":" + quote(retryAfter) +
                               ",\"secrets\":[" + list + "]}");
    REQUIRE(r.status == 200);
}

void WebhookReceiver::setSecrets(const std::string& path, const std::vector<std::string>& secrets) const
{
    std::string list;
    for (const auto& s : secrets) list += (list.empty() ? "" : ",") + quote(s);
    const auto r = control(tls_, port_, "POST", "/_control/secrets",
                           "{\"path\":" + quote(path) + ",\"secrets\":[" + list + "]}");
    REQUIRE(r.status == 200);
}

std::vector<WebhookReceiver::Entry> WebhookReceiver::log(const std::string& path) const
{
    std::string encoded;
    Poco::URI::encode(path, "/?&=#", encoded);
    const auto r = control(tls_, port_, "GET", "/_control/log?path=" + encoded, "");
    REQUIRE(r.status == 200);
    const auto list = parseJson(r.body).extract<Poco::JSON::Array::Ptr>();
    std::vector<Entry> entries;
    for (std::size_t i = 0; i < list->size(); ++i) {
        const auto o = arrayObject(list, i);
        Entry e;
        e.path = getString(o, "path").value_or("");
        e.at = o->getValue<double>("at");
        const auto h = getObject(o, "headers");
        auto header = [&](const char* name) { return h && !isNull(h, name) ? getString(h, name).value_or("") : ""; };
        e.webhookId = header("webhook-id");
        e.timestamp = header("webhook-timestamp");
        e.signature = header("webhook-signature");
        e.body = getString(o, "body").value_or("");
        e.answered = isNull(o, "answered") ? 0 : static_cast<int>(getInt(o, "answered").value_or(0));
        e.signatures = static_cast<int>(getInt(o, "signatures").value_or(0));
        if (const auto v = getArray(o, "verified"))
            for (std::size_t k = 0; k < v->size(); ++k) e.verified.push_back(v->getElement<bool>(static_cast<unsigned>(k)));
        e.timestampOk = o->getValue<bool>("timestamp_ok");
        e.jsonOk = o->getValue<bool>("json_ok");
        entries.push_back(std::move(e));
    }
    return entries;
}

long long WebhookReceiver::tlsHandshakeFailures() const
{
    const auto r = control(tls_, port_, "GET", "/_control/health", "");
    REQUIRE(r.status == 200);
    return getInt(parseJson(r.body).extract<Poco::JSON::Object::Ptr>(), "tls_handshake_failures").value_or(0);
}

int WebhookReceiver::selfTest()
{
    const int status = std::system(("python3 '" + receiverScript() + "' --self-test >/dev/null 2>&1").c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace e2e
