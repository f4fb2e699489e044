#include "Daemon.h"

#include <catch2/catch.hpp>

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Timespan.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <grp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace fs = std::filesystem;

namespace e2e {

bool underSanitizers() { return std::getenv("ASAN_OPTIONS") != nullptr; }

std::string orderpaydPath()
{
    // ORDERPAY_E2E_DAEMON runs the suite against another build (an earlier
    // release, to see a new test fail there).
    const char* other = std::getenv("ORDERPAY_E2E_DAEMON");
    return other && *other ? other : ORDERPAYD_PATH;
}
std::string configPath() { return ORDERPAY_CONFIG_PATH; }

std::string sourceDir()
{
    // ORDERPAY_CONFIG_PATH is <source>/etc/orderpay/orderpay.properties
    return fs::path(configPath()).parent_path().parent_path().parent_path().string();
}

std::string readFile(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) return {};
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// ---------------------------------------------------------------- RabbitMQ

bool usingRabbitMq()
{
    const char* env = std::getenv("ORDERPAY_E2E_RABBITMQ_ENV");
    return env && *env;
}

std::string rabbitMqNodeScript() { return ORDERPAY_RABBITMQ_NODE_SCRIPT; }

RabbitMqNode readRabbitMqEnv(const std::string& envPath)
{
    std::ifstream in(envPath);
    if (!in)
        throw std::runtime_error("cannot read the RabbitMQ node's env file " + envPath +
                                 " (is the node running? see the \"rabbitmq: start\" test)");
    std::map<std::string, std::string> values;
    std::string line;
    while (std::getline(in, line)) {
        auto eq = line.find('=');
        if (eq == std::string::npos || line[0] == '#') continue;
        std::string value = line.substr(eq + 1);
        if (value.size() >= 2 && value.front() == '\'' && value.back() == '\'')
            value = value.substr(1, value.size() - 2);
        values[line.substr(0, eq)] = value;
    }
    RabbitMqNode node;
    node.dir = fs::path(envPath).parent_path().string();
    node.uri = values["RABBITMQ_URI"];
    node.name = values["RABBITMQ_NODE"];
    node.user = values["RABBITMQ_USER"];
    node.vhost = values["RABBITMQ_VHOST"];
    node.tlsUri = values["RABBITMQ_TLS_URI"];
    node.caFile = values["RABBITMQ_CA_FILE"];
    // amqp://user:password@host:port/vhost
    std::smatch m;
    static const std::regex uriParts(R"(^amqps?://([^:@/]*):([^@/]*)@[^/:]+:([0-9]+)/.*$)");
    if (!std::regex_match(node.uri, m, uriParts) || node.name.empty())
        throw std::runtime_error("incomplete RabbitMQ env file " + envPath);
    node.password = m[2];
    node.port = static_cast<unsigned short>(std::stoi(m[3]));
    return node;
}

const RabbitMqNode& rabbitMqNode()
{
    static std::mutex mu;
    static std::optional<RabbitMqNode> node;
    std::lock_guard<std::mutex> lock(mu);
    if (!node) {
        const char* env = std::getenv("ORDERPAY_E2E_RABBITMQ_ENV");
        if (!env || !*env)
            throw std::runtime_error("ORDERPAY_E2E_RABBITMQ_ENV is not set: this test needs a RabbitMQ node "
                                     "(run it through ctest as \"e2e-rabbitmq: ...\")");
        node = readRabbitMqEnv(env);
    }
    return *node;
}

std::string uniqueBrokerPrefix()
{
    static std::mutex mu;
    static std::mt19937_64 rng{std::random_device{}()};
    std::lock_guard<std::mutex> lock(mu);
    std::ostringstream out;
    out << 't' << ::getpid() << '-' << std::hex << (rng() & 0xffffffffffULL) << '.';
    return out.str();
}

std::string redactAmqpPasswords(const std::string& text)
{
    static const std::regex password(R"((amqps?://[^:@/\s]*):[^@/\s]*@)");
    return std::regex_replace(text, password, "$1:***@");
}

// ---------------------------------------------------------------- PostgreSQL

bool usingPostgresql()
{
    const char* dir = std::getenv("ORDERPAY_E2E_POSTGRESQL_DIR");
    return dir && *dir;
}

std::string postgresqlUri()
{
    static const std::string uri = [] {
        const char* dir = std::getenv("ORDERPAY_E2E_POSTGRESQL_DIR");
        if (!dir || !*dir) throw std::runtime_error("ORDERPAY_E2E_POSTGRESQL_DIR is not set");
        std::ifstream in(std::string(dir) + "/env");
        for (std::string line; std::getline(in, line);)
            if (line.rfind("POSTGRESQL_URI=", 0) == 0) return line.substr(line.find('=') + 1);
        throw std::runtime_error(std::string("no POSTGRESQL_URI in ") + dir + "/env (is the server started?)");
    }();
    return uri;
}

std::vector<std::string> postgresqlQuery(const std::string& uri, const std::string& sql)
{
    std::unique_ptr<PGconn, void (*)(PGconn*)> c(PQconnectdb(uri.c_str()), &PQfinish);
    if (PQstatus(c.get()) != CONNECTION_OK)
        throw std::runtime_error(std::string("cannot connect to PostgreSQL: ") + PQerrorMessage(c.get()));
    std::unique_ptr<PGresult, void (*)(PGresult*)> r(PQexec(c.get(), sql.c_str()), &PQclear);
    const auto status = PQresultStatus(r.get());
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK)
        throw std::runtime_error("PostgreSQL refused " + sql + ": " + PQresultErrorMessage(r.get()));
    std::vector<std::string> rows;
    for (int i = 0; i < PQntuples(r.get()); ++i) rows.emplace_back(PQgetvalue(r.get(), i, 0));
    return rows;
}

PostgresqlDatabase::PostgresqlDatabase()
{
    static std::atomic<int> counter{0};
    name_ = "e2e_" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
    postgresqlQuery(postgresqlUri(), "CREATE DATABASE " + name_);
    const std::string base = postgresqlUri();
    uri_ = base.substr(0, base.rfind('/') + 1) + name_;
}

PostgresqlDatabase::~PostgresqlDatabase()
{
    try {
        postgresqlQuery(postgresqlUri(), "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (const std::exception& e) {
        std::cerr << "could not drop the test database " << name_ << ": " << e.what() << "\n";
    }
}

PrivatePostgresql::PrivatePostgresql(const std::string& dir) : dir_(dir)
{
    run("start", std::to_string(::getpid()));
    std::ifstream in(dir_ + "/env");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("POSTGRESQL_URI=", 0) == 0) uri_ = line.substr(line.find('=') + 1);
    if (uri_.empty()) throw std::runtime_error("no POSTGRESQL_URI in " + dir_ + "/env");
}

PrivatePostgresql::~PrivatePostgresql()
{
    try {
        run("remove");
    } catch (const std::exception& e) {
        std::cerr << e.what() << "\n";
    }
}

void PrivatePostgresql::stop() { run("stop"); }
void PrivatePostgresql::start() { run("restart"); }
void PrivatePostgresql::freeze() { run("freeze"); }
void PrivatePostgresql::thaw() { run("thaw"); }

void PrivatePostgresql::run(const std::string& command, const std::string& extra)
{
    const std::string cmd = "'" + std::string(ORDERPAY_POSTGRESQL_NODE_SCRIPT) + "' " + command + " '" + dir_ + "' " +
                            extra + " >>'" + dir_ + ".out' 2>&1";
    if (std::system(cmd.c_str()) != 0)
        throw std::runtime_error("postgresql-node " + command + " failed; see " + dir_ + ".out");
}

std::string PostgresqlDatabase::query(const std::string& sql) const
{
    const auto rows = postgresqlQuery(uri_, sql);
    return rows.empty() ? std::string() : rows.front();
}

// ---------------------------------------------------------------- TempDir

TempDir::TempDir()
{
    std::string tmpl = (fs::temp_directory_path() / "orderpay-e2e-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data()))
        throw std::runtime_error(std::string("mkdtemp failed: ") + std::strerror(errno));
    path_ = buf.data();
}

TempDir::~TempDir()
{
    if (std::getenv("ORDERPAY_E2E_KEEP")) {
        std::cerr << "keeping " << path_ << "\n";
        return;
    }
    std::error_code ec;
    fs::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& content, unsigned mode) const
{
    std::string p = path_ + "/" + name;
    {
        std::ofstream out(p, std::ios::binary | std::ios::trunc);
        out << content;
        if (!out) throw std::runtime_error("cannot write " + p);
    }
    ::chmod(p.c_str(), mode);
    return p;
}

// ---------------------------------------------------------------- processes

namespace {

int decodeStatus(int status)
{
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

// fork/exec `args` (args[0] is the program) with stdout+stderr appended to
// `outPath`. Everything the child needs is prepared before fork(); the child
// only calls async-signal-safe functions.
pid_t spawn(const std::vector<std::string>& args, const std::string& outPath,
            const std::vector<std::string>& extraEnv = {}, RunAs user = {}, const std::string& netns = {})
{
    // The host's network namespace, entered by the child before exec.
    int nsFd = -1;
    if (!netns.empty()) {
        nsFd = ::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
        if (nsFd < 0) throw std::runtime_error("cannot open network namespace " + netns + ": " + std::strerror(errno));
    }
    // The environment: ours, minus anything overridden, plus the extras.
    std::vector<std::string> envStrings;
    for (char** e = environ; e && *e; ++e) {
        std::string entry(*e);
        std::string name = entry.substr(0, entry.find('='));
        bool overridden = std::any_of(extraEnv.begin(), extraEnv.end(), [&](const std::string& x) {
            return x.substr(0, x.find('=')) == name;
        });
        // Never hand our own systemd/journal context to the daemon under test.
        if (!overridden && name != "NOTIFY_SOCKET" && name != "WATCHDOG_USEC" &&
            name != "WATCHDOG_PID" && name != "JOURNAL_STREAM" && name != "LISTEN_FDS" &&
            name != "LISTEN_PID")
            envStrings.push_back(entry);
    }
    envStrings.insert(envStrings.end(), extraEnv.begin(), extraEnv.end());
    std::vector<char*> envp;
    for (auto& e : envStrings) envp.push_back(e.data());
    envp.push_back(nullptr);

    int fd = ::open(outPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        throw std::runtime_error("cannot open " + outPath + ": " + std::strerror(errno));
    int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);

    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);

    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
        int e = errno;
        if (nsFd >= 0) ::close(nsFd);
        ::close(fd);
        if (devnull >= 0) ::close(devnull);
        throw std::runtime_error(std::string("fork failed: ") + std::strerror(e));
    }
    if (pid == 0) {
        // If the test runner dies (crash, timeout kill), take the daemon along.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(127);
        if (nsFd >= 0 && ::setns(nsFd, CLONE_NEWNET) != 0) {
            static const char msg[] = "e2e: cannot enter the host's network namespace\n";
            (void)!::write(2, msg, sizeof msg - 1);
            ::_exit(127);
        }
        if (devnull >= 0) ::dup2(devnull, 0);
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        // Do not leak the test's sockets and files into the daemon.
        for (int i = 3; i < 1024; ++i) ::close(i);
        // Reset signal state inherited from the test runner.
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::signal(SIGPIPE, SIG_DFL);
        ::signal(SIGTERM, SIG_DFL);
        ::signal(SIGINT, SIG_DFL);
        if (user.uid != 0 && (::setgroups(0, nullptr) != 0 || ::setgid(user.gid) != 0 || ::setuid(user.uid) != 0)) {
            static const char msg[] = "e2e: cannot change to the test's user\n";
            (void)!::write(2, msg, sizeof msg - 1);
            ::_exit(127);
        }
        ::execve(argv[0], argv.data(), envp.data());
        static const char msg[] = "e2e: execv failed\n";
        (void)!::write(2, msg, sizeof msg - 1);
        ::_exit(127);
    }
    ::close(fd);
    if (devnull >= 0) ::close(devnull);
    if (nsFd >= 0) ::close(nsFd);
    return pid;
}

// Waits up to `timeout` for `pid`; returns the raw wait status.
std::optional<int> waitFor(pid_t pid, Millis timeout)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        int status = 0;
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0 && errno != EINTR) return std::nullopt;
        if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(10ms);  // poll interval, bounded by the deadline above
    }
}

// GET http://host:port/path: the status and body; throws on connection errors.
std::pair<int, std::string> httpGet(const std::string& host, unsigned short port, const std::string& path)
{
    Poco::Net::HTTPClientSession session(host, port);
    session.setTimeout(Poco::Timespan(1, 0));
    Poco::Net::HTTPRequest req(Poco::Net::HTTPRequest::HTTP_GET, path, Poco::Net::HTTPMessage::HTTP_1_1);
    session.sendRequest(req);
    Poco::Net::HTTPResponse resp;
    std::istream& body = session.receiveResponse(resp);
    std::string text((std::istreambuf_iterator<char>(body)), {});
    return {static_cast<int>(resp.getStatus()), text};
}

// The `broker` component of GET /health/ready, or a description of what went wrong.
std::string readyBrokerState(unsigned short port)
{
    try {
        auto [status, body] = httpGet("127.0.0.1", port, "/health/ready");
        Poco::JSON::Parser parser;
        auto o = parser.parse(body).extract<Poco::JSON::Object::Ptr>();
        Poco::JSON::Object::Ptr components;
        if (o) components = o->getObject("components");
        if (components && components->has("broker")) return components->getValue<std::string>("broker");
        return "GET /health/ready answered " + std::to_string(status) + ": " + body;
    } catch (const std::exception& e) {
        return e.what();
    }
}

} // namespace

RunResult runOrderpayd(const std::vector<std::string>& args, Millis timeout, RunAs user)
{
    TempDir dir;
    std::string out = dir.path() + "/output.txt";
    std::vector<std::string> full{orderpaydPath()};
    std::vector<std::string> env;
    if (user.uid != 0) {
        // The build tree may sit below a folder only root may enter (a
        // fresh clone in a mktemp folder): the other user runs a copy.
        ::chmod(dir.path().c_str(), 0755);
        full.front() = dir.path() + "/orderpayd";
        fs::copy_file(orderpaydPath(), full.front());
        ::chmod(full.front().c_str(), 0755);
        // Nor may it read the sanitizers' suppression file there (an
        // unreadable one ends the process at start; the file is empty).
        env.push_back("LSAN_OPTIONS=print_suppressions=0");
    }
    full.insert(full.end(), args.begin(), args.end());
    const auto started = std::chrono::steady_clock::now();
    pid_t pid = spawn(full, out, env, user);

    RunResult result;
    auto st = waitFor(pid, timeout);
    result.elapsed = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started);
    if (!st) {
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
        result.timedOut = true;
        result.exitCode = -1;
    } else {
        result.exitCode = decodeStatus(*st);
    }
    result.output = readFile(out);
    return result;
}

unsigned short freePort()
{
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) throw std::runtime_error("socket() failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(s);
        throw std::runtime_error("bind() failed");
    }
    socklen_t len = sizeof addr;
    ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(s);
    return ntohs(addr.sin_port);
}

// ---------------------------------------------------------------- Daemon

Daemon::Daemon(std::vector<std::string> defines, Wait wait, std::vector<std::string> env, Placement at)
    : defines_(std::move(defines)), env_(std::move(env)), at_(std::move(at)), port_(freePort()),
      logPath_(dir_.path() + "/daemon.log")
{
    if (usingRabbitMq()) {
        rabbitMqNode();  // fail early, with the reason, if the node is not there
        ownPrefix_ = uniqueBrokerPrefix();
    }
    const bool storeChosen = std::any_of(defines_.begin(), defines_.end(), [](const std::string& d) {
        return d.rfind("store.kind=", 0) == 0 || d.rfind("store.sqlite.path=", 0) == 0 ||
               d.rfind("store.postgresql.uri=", 0) == 0;
    });
    if (usingPostgresql() && !storeChosen) database_ = std::make_unique<PostgresqlDatabase>();
    try {
        start();
        if (wait == Wait::Ready) waitReady();
    } catch (...) {
        if (pid_ > 0 && !exitCode_) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
        throw;
    }
}

Daemon::~Daemon()
{
    if (pid_ > 0 && !exitCode_) {
        ::kill(pid_, SIGKILL);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        exitCode_ = decodeStatus(status);
    }
    if (std::uncaught_exceptions() > 0) {
        // A REQUIRE failed: show what the daemon had to say.
        std::cerr << "---- orderpayd log tail (" << logPath_ << ") ----\n"
                  << logTail(3000) << "\n---- end of log ----\n";
    }
}

std::vector<std::string> Daemon::argv() const
{
    std::vector<std::string> a{
        orderpaydPath(),
        "--config=" + configPath(),
        "-D", "http.port=" + std::to_string(port_),
        "-D", "store.sqlite.path=" + dbPath(),
        "-D", "logging.target=console",
    };
    // On a test host every address is the test's own (a namespace on a
    // private bridge): no token guards it.
    if (!at_.netns.empty()) a.insert(a.end(), {"-D", "http.host=0.0.0.0", "-D", "http.allow_unauthenticated=true"});
    const auto defined = [&](const std::string& key) {
        return std::any_of(defines_.begin(), defines_.end(), [&](const std::string& d) {
            return d.substr(0, d.find('=')) == key;
        });
    };
    if (usingRabbitMq() && !defined("broker.kind")) {
        // The test's own defines come later and win: add only what it left out.
        a.insert(a.end(), {"-D", "broker.kind=rabbitmq"});
        if (!defined("broker.rabbitmq.uri"))
            a.insert(a.end(), {"-D", "broker.rabbitmq.uri=" + rabbitMqNode().uri});
        if (!defined("broker.rabbitmq.prefix"))
            a.insert(a.end(), {"-D", "broker.rabbitmq.prefix=" + ownPrefix_});
    }
    if (database_) a.insert(a.end(), {"-D", "store.kind=postgresql", "-D", "store.postgresql.uri=" + database_->uri()});
    for (const auto& d : defines_) {
        a.push_back("-D");
        a.push_back(d);
    }
    return a;
}

std::string Daemon::dbPath() const { return dir_.path() + "/orderpay.db"; }

std::string Daemon::brokerPrefix() const
{
    std::string prefix = ownPrefix_;
    for (const auto& d : defines_)
        if (d.rfind("broker.rabbitmq.prefix=", 0) == 0) prefix = d.substr(d.find('=') + 1);
    return prefix;
}

void Daemon::start()
{
    if (pid_ > 0 && !exitCode_) throw std::logic_error("daemon already running");
    exitCode_.reset();
    {
        std::ofstream marker(logPath_, std::ios::app);
        marker << "==== e2e: starting orderpayd";
        // Redacted: the tests look for the broker password in this log.
        for (const auto& a : argv()) marker << ' ' << redactAmqpPasswords(a);
        marker << "\n";
    }
    pid_ = spawn(argv(), logPath_, env_, {}, at_.netns);
}

void Daemon::reap(int status) { exitCode_ = decodeStatus(status); }

bool Daemon::running()
{
    if (pid_ <= 0 || exitCode_) return false;
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
        reap(status);
        return false;
    }
    return true;
}

std::optional<int> Daemon::waitExit(Millis timeout)
{
    if (exitCode_) return exitCode_;
    if (pid_ <= 0) return std::nullopt;
    auto st = waitFor(pid_, timeout);
    if (!st) return std::nullopt;
    reap(*st);
    return exitCode_;
}

void Daemon::waitReady(Millis timeout)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string lastError;
    for (;;) {
        if (!running()) {
            FAIL("orderpayd exited with code " << (exitCode_ ? *exitCode_ : -1)
                 << " before becoming ready; log tail:\n" << logTail());
        }
        try {
            auto [status, body] = httpGet(host(), port_, "/health/live");
            if (status == 200) break;
            lastError = "GET /health/live answered " + std::to_string(status);
        } catch (const std::exception& e) {
            lastError = e.what();
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            FAIL("orderpayd not ready on port " << port_ << " within "
                 << timeout.count() << " ms (" << lastError << "); log tail:\n" << logTail());
        }
        std::this_thread::sleep_for(25ms);  // poll interval, bounded by the deadline above
    }
    if (!usesFixtureBroker()) return;
    // On the suite's RabbitMQ node, ready also means connected to it (the
    // daemon connects after it starts serving HTTP; tests that point it
    // elsewhere, or at nothing, wait for what they expect themselves).
    const auto brokerDeadline = std::chrono::steady_clock::now() + std::max<Millis>(timeout, 30s);
    std::string state;
    while ((state = readyBrokerState(port_)) != "ok") {
        if (!running())
            FAIL("orderpayd exited with code " << (exitCode_ ? *exitCode_ : -1)
                 << " before connecting to RabbitMQ; log tail:\n" << logTail());
        if (std::chrono::steady_clock::now() >= brokerDeadline)
            FAIL("orderpayd on port " << port_ << " did not connect to RabbitMQ (broker: " << state
                 << "); log tail:\n" << logTail());
        std::this_thread::sleep_for(25ms);  // poll interval, bounded by the deadline above
    }
}

bool Daemon::usesFixtureBroker() const
{
    if (!usingRabbitMq()) return false;
    return std::none_of(defines_.begin(), defines_.end(), [](const std::string& d) {
        const auto key = d.substr(0, d.find('='));
        return key == "broker.kind" || key == "broker.rabbitmq.uri";
    });
}

void Daemon::signal(int sig)
{
    if (pid_ > 0 && !exitCode_) ::kill(pid_, sig);
}

int Daemon::terminate(Millis timeout)
{
    if (exitCode_) return *exitCode_;
    signal(SIGTERM);
    auto code = waitExit(timeout);
    if (!code) {
        kill();
        FAIL("orderpayd did not exit within " << timeout.count()
             << " ms of SIGTERM; log tail:\n" << logTail());
    }
    return *code;
}

void Daemon::kill()
{
    if (pid_ <= 0 || exitCode_) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {}
    reap(status);
}

void Daemon::restart(const std::vector<std::string>& extraDefines, Wait wait)
{
    if (running()) kill();
    for (const auto& d : extraDefines) {
        auto key = d.substr(0, d.find('='));
        defines_.erase(std::remove_if(defines_.begin(), defines_.end(),
                                      [&](const std::string& x) {
                                          return x.substr(0, x.find('=')) == key;
                                      }),
                       defines_.end());
        defines_.push_back(d);
    }
    start();
    if (wait == Wait::Ready) waitReady();
}

std::string Daemon::log() const { return readFile(logPath_); }

std::string Daemon::logTail(std::size_t bytes) const
{
    std::string all = log();
    if (all.size() <= bytes) return all;
    return "..." + all.substr(all.size() - bytes);
}

} // namespace e2e

namespace e2e {

FrozenThread::FrozenThread(pid_t pid, const std::string& name)
{
    const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
    for (const auto& task : fs::directory_iterator(tasks)) {
        std::ifstream comm(task.path() / "comm");
        std::string threadName;
        std::getline(comm, threadName);
        if (threadName != name) continue;
        tid_ = static_cast<pid_t>(std::stol(task.path().filename().string()));
        break;
    }
    if (tid_ < 0) throw std::runtime_error("process " + std::to_string(pid) + " has no thread named " + name);
    // Seized (no SIGSTOP, which would stop every thread), then interrupted:
    // this thread alone stops.
    if (::ptrace(PTRACE_SEIZE, tid_, nullptr, nullptr) != 0)
        throw std::runtime_error("ptrace(PTRACE_SEIZE) of thread " + name + ": " + std::strerror(errno));
    if (::ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) != 0) {
        const int e = errno;
        ::ptrace(PTRACE_DETACH, tid_, nullptr, nullptr);
        throw std::runtime_error("ptrace(PTRACE_INTERRUPT) of thread " + name + ": " + std::strerror(e));
    }
    int status = 0;
    if (::waitpid(tid_, &status, __WALL) != tid_ || !WIFSTOPPED(status)) {
        ::ptrace(PTRACE_DETACH, tid_, nullptr, nullptr);
        throw std::runtime_error("thread " + name + " did not stop");
    }
}

FrozenThread::~FrozenThread()
{
    if (tid_ > 0) ::ptrace(PTRACE_DETACH, tid_, nullptr, nullptr);
}

void FrozenThread::reapAfterKill()
{
    // The thread's end is told to its tracer first: until this test reads
    // it, the process cannot be reaped (Daemon::kill would wait forever).
    int status = 0;
    while (::waitpid(tid_, &status, __WALL) == tid_ && !WIFEXITED(status) && !WIFSIGNALED(status)) {
        ::ptrace(PTRACE_CONT, tid_, nullptr, nullptr);
    }
    tid_ = -1;
}

}  // namespace e2e
