// End-to-end test fixture: one orderpayd process on a free loopback port with
// its own temporary directory (database, log, any files a test writes there).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

namespace e2e {

using namespace std::chrono_literals;
using Millis = std::chrono::milliseconds;

// Path of the daemon under test and of the shipped configuration file.
std::string orderpaydPath();
std::string configPath();
// The source tree (derived from the shipped config's path).
std::string sourceDir();

// A directory under $TMPDIR removed (recursively) on destruction, unless the
// environment variable ORDERPAY_E2E_KEEP is set.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }
    // Writes a file in the directory and returns its full path.
    std::string write(const std::string& name, const std::string& content,
                      unsigned mode = 0600) const;

private:
    std::string path_;
};

// Result of a short-lived orderpayd run (--version, --check-config, ...).
struct RunResult {
    int exitCode = -1;      // exit status, or 128+signal; -1 if it timed out
    bool timedOut = false;
    std::string output;     // stdout and stderr, interleaved
    Millis elapsed{0};      // from the start of the process to its exit
};

// A user to run the daemon as instead of root (the tests run as root, whom
// file permissions do not stop): nobody, the unprivileged user every Debian
// system has.
struct RunAs {
    unsigned uid = 0;  // 0: as the test runs
    unsigned gid = 0;
    static RunAs nobody() { return {65534, 65534}; }
};

// Runs orderpayd with exactly these arguments (no implicit --config) and waits
// for it to exit; kills it after `timeout`. As another `user`, a copy of the
// binary runs (files the arguments name must be readable by that user).
RunResult runOrderpayd(const std::vector<std::string>& args, Millis timeout = 20s, RunAs user = {});

// True when the daemon under test is the ASan+UBSan build (tests/run-sanitized
// sets ASAN_OPTIONS): it runs 2-3 times slower, so a bound on how quickly
// something answers is scaled by the caller.
bool underSanitizers();

// Picks a currently free TCP port on 127.0.0.1.
unsigned short freePort();

// Stops one thread of a running process, found by its name (as top -H
// shows it), and leaves the others running: ptrace's seize and interrupt,
// as a debugger does. A thread that hangs, without a fault switch in the
// program. Destruction lets it run on.
class FrozenThread {
public:
    FrozenThread(pid_t pid, const std::string& name);
    ~FrozenThread();
    FrozenThread(const FrozenThread&) = delete;
    // After the process was sent SIGKILL while the thread was frozen:
    // takes the thread's end, which goes to this tracer before the process
    // can be reaped. Call it from the thread that froze it.
    void reapAfterKill();
    FrozenThread& operator=(const FrozenThread&) = delete;

private:
    pid_t tid_ = -1;
};

// Reads a whole file; empty string if it does not exist.
std::string readFile(const std::string& path);

// ---------------------------------------------------------------- RabbitMQ

// A RabbitMQ node started by tests/rabbitmq/rabbitmq-node, as its env file
// describes it.
struct RabbitMqNode {
    std::string dir;       // the node's folder (holds `env`)
    std::string uri;       // amqp://user:password@127.0.0.1:port/vhost
    std::string user;
    std::string password;
    std::string vhost;
    std::string name;      // Erlang node name
    unsigned short port = 0;
    std::string tlsUri;    // amqps://user:password@localhost:tls-port/vhost
    std::string caFile;    // the CA that signed the node's certificate
};

// True when the suite runs against RabbitMQ: ORDERPAY_E2E_RABBITMQ_ENV names
// the env file of a running node (CTest's "e2e-rabbitmq: " registration).
bool usingRabbitMq();
// That node; throws if ORDERPAY_E2E_RABBITMQ_ENV is unset or unreadable.
const RabbitMqNode& rabbitMqNode();
// Reads a node's env file; throws if it is missing or incomplete.
RabbitMqNode readRabbitMqEnv(const std::string& envPath);
// Path of the tests/rabbitmq/rabbitmq-node script.
std::string rabbitMqNodeScript();
// A prefix for the exchange and queue names of one test's daemons,
// "t<pid>-<random>.", so test cases sharing a node never share a queue.
std::string uniqueBrokerPrefix();
// `text` with the password of every amqp:// or amqps:// URI replaced by "***".
std::string redactAmqpPasswords(const std::string& text);

// ---------------------------------------------------------------- PostgreSQL

// True when the suite runs on PostgreSQL: ORDERPAY_E2E_POSTGRESQL_DIR names
// the folder of a running server (tests/postgresql/postgresql-node; CTest's
// "e2e-postgresql: " registrations).
bool usingPostgresql();
// The server's URI (postgresql://user:password@127.0.0.1:port/db).
std::string postgresqlUri();
// A database of its own on the suite's server, created now and dropped
// (WITH FORCE) on destruction.
class PostgresqlDatabase {
public:
    PostgresqlDatabase();
    ~PostgresqlDatabase();
    PostgresqlDatabase(const PostgresqlDatabase&) = delete;
    PostgresqlDatabase& operator=(const PostgresqlDatabase&) = delete;

    const std::string& uri() const { return uri_; }
    const std::string& name() const { return name_; }
    // Runs one statement on it; the first column of the first row, if any.
    std::string query(const std::string& sql) const;

private:
    std::string name_;
    std::string uri_;
};
// A PostgreSQL server of one test's own (tests/postgresql/postgresql-node),
// for a test that stops it: started now, removed on destruction (and by
// the script's watcher if the test process dies first).
class PrivatePostgresql {
public:
    explicit PrivatePostgresql(const std::string& dir);
    ~PrivatePostgresql();
    PrivatePostgresql(const PrivatePostgresql&) = delete;
    PrivatePostgresql& operator=(const PrivatePostgresql&) = delete;

    const std::string& uri() const { return uri_; }
    void stop();   // fast shutdown: every connection is closed
    void start();  // again, on the same port and data
    void freeze(); // SIGSTOP to every process of the server: nothing answers
    void thaw();   // SIGCONT

private:
    void run(const std::string& command, const std::string& extra = {});
    std::string dir_;
    std::string uri_;
};
// Runs `sql` on the database `uri` names; the first column of each row.
std::vector<std::string> postgresqlQuery(const std::string& uri, const std::string& sql);

// Where a daemon runs: this machine's loopback (the default), or a host of
// the cluster tests (a network namespace made by tests/cluster/hosts). There
// it listens on every address of the host: clients on this machine reach it
// through the bridge at `address`, clients on the host itself through its
// loopback.
struct Placement {
    std::string netns;    // empty: this machine's own namespace
    std::string address;  // the host's address on the bridge
};

class Daemon {
public:
    enum class Wait { Ready, No };

    // `defines` are extra "key=value" configuration overrides passed as -D;
    // `env` are extra "NAME=value" environment variables for the process.
    // With usingRabbitMq(), broker.kind=rabbitmq, the node's URI and a
    // prefix of its own are added, unless `defines` sets broker.kind (then
    // nothing is added) or the URI or prefix (then those are kept). With
    // usingPostgresql(), store.kind=postgresql on a database of its own,
    // unless `defines` chooses the store (kind, SQLite path or URI).
    explicit Daemon(std::vector<std::string> defines = {}, Wait wait = Wait::Ready,
                    std::vector<std::string> env = {}, Placement at = {});
    ~Daemon();
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    // Launches the process (it must not be running).
    void start();
    // Polls GET /health/live until 200; FAILs the test (with the log tail) if
    // the process exits or the deadline passes. On the suite's RabbitMQ node
    // (usingRabbitMq() and no broker.kind or broker.rabbitmq.uri of the
    // test's own) it then also waits, up to 30 s, until /health/ready reports
    // the broker "ok".
    void waitReady(Millis timeout = 10s);
    // True while the process has not exited.
    bool running();
    // Waits for the process to exit; its exit code (128+signal if killed by a
    // signal), or nullopt if still running at the deadline.
    std::optional<int> waitExit(Millis timeout);
    // Sends a signal to the daemon's pid (only that pid).
    void signal(int sig);
    // SIGTERM and wait; returns the exit code. FAILs if it does not exit in time.
    int terminate(Millis timeout = 20s);
    // SIGKILL and reap.
    void kill();
    // Starts again on the same database, port and log (after kill/terminate;
    // if still running it is killed first). `extraDefines` replace/extend the
    // original -D list for this and later starts.
    void restart(const std::vector<std::string>& extraDefines = {}, Wait wait = Wait::Ready);

    std::string log() const;                        // whole log so far
    std::string logTail(std::size_t bytes = 4000) const;
    unsigned short port() const { return port_; }
    // The address clients on this machine reach it at (127.0.0.1, or its host's).
    std::string host() const { return at_.netns.empty() ? "127.0.0.1" : at_.address; }
    const Placement& placement() const { return at_; }
    std::string dbPath() const;
    // The URI of the daemon's own PostgreSQL database (empty: it runs on SQLite).
    std::string postgresqlUri() const { return database_ ? database_->uri() : std::string(); }
    const std::string& dir() const { return dir_.path(); }
    const std::string& logPath() const { return logPath_; }
    pid_t pid() const { return pid_; }
    std::vector<std::string> argv() const;          // the command line used
    // The broker.rabbitmq.prefix this daemon runs with (empty without RabbitMQ).
    std::string brokerPrefix() const;
    // True if this daemon runs on the suite's RabbitMQ node (see waitReady).
    bool usesFixtureBroker() const;

private:
    void reap(int status);

    TempDir dir_;
    std::vector<std::string> defines_;
    std::vector<std::string> env_;
    std::string ownPrefix_;  // generated when usingRabbitMq()
    // With usingPostgresql() and no store of the test's choosing: the
    // daemon's own database, for as long as this object lives.
    std::unique_ptr<PostgresqlDatabase> database_;
    Placement at_;
    unsigned short port_;
    std::string logPath_;
    pid_t pid_ = -1;
    std::optional<int> exitCode_;
};

} // namespace e2e
