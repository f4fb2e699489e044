// The cluster tests' machines: hosts made of network namespaces on a bridge
// (tests/cluster/hosts), and on them a PostgreSQL primary with a streaming
// standby (tests/postgresql/postgresql-node), a three-node RabbitMQ cluster
// (tests/rabbitmq/rabbitmq-node) and orderpayd instances (e2e::Daemon with a
// Placement). Each object removes what it started when it goes, and the
// scripts' watchers do it when the test process dies first.
#pragma once

#include "Daemon.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace cluster {

// Runs a shell command; its exit status and its output (stdout and stderr).
std::pair<int, std::string> shell(const std::string& command);
// Runs it and FAILs the test, with the output, unless it exits 0.
std::string mustRun(const std::string& command);
// A word quoted for the shell.
std::string quoted(const std::string& word);

// Hosts on a bridge of their own: one network namespace per name.
class Hosts {
public:
    // `dir` holds the hosts' records (and the servers' folders, below it).
    Hosts(std::string dir, const std::vector<std::string>& names);
    ~Hosts();
    Hosts(const Hosts&) = delete;
    Hosts& operator=(const Hosts&) = delete;

    std::string address(const std::string& name) const;
    std::string netns(const std::string& name) const;
    e2e::Placement placement(const std::string& name) const { return {netns(name), address(name)}; }
    // "hosts exec DIR NAME": a prefix that runs a command on that host.
    std::string on(const std::string& name) const;
    // Every packet to or from the host dropped, silently; and back.
    void cut(const std::string& name);
    void mend(const std::string& name);
    const std::string& dir() const { return dir_; }

private:
    std::string dir_;
};

// A PostgreSQL server on one host (tests/postgresql/postgresql-node).
class PostgresqlServer {
public:
    // Starts a primary on `host`.
    PostgresqlServer(Hosts& hosts, std::string host);
    // Starts a streaming standby of `primary` on `host`.
    PostgresqlServer(Hosts& hosts, std::string host, const PostgresqlServer& primary);
    ~PostgresqlServer();
    PostgresqlServer(const PostgresqlServer&) = delete;
    PostgresqlServer& operator=(const PostgresqlServer&) = delete;

    // postgresql://user:password@address:port/db
    std::string uri() const;
    std::string hostPort() const;  // address:port
    const std::string& dir() const { return dir_; }
    std::string env(const std::string& key) const;

    void kill();     // SIGKILL the postmaster: the machine is lost
    void promote();  // a standby becomes the primary (waits until it writes)
    // On a primary: commits wait for a standby's confirmation (synchronous
    // replication), or not.
    void synchronous(bool on);

private:
    std::string node(const std::string& command, const std::string& args = {}) const;
    Hosts& hosts_;
    std::string host_;
    std::string dir_;
};

// libpq's multi-host URI over the servers, asking for the one that writes.
std::string failoverUri(const std::vector<const PostgresqlServer*>& servers);

// A RabbitMQ node on one host; the first of a cluster starts it, the
// others join it.
class RabbitMqNode {
public:
    RabbitMqNode(Hosts& hosts, std::string host, const RabbitMqNode* seed = nullptr);
    ~RabbitMqNode();
    RabbitMqNode(const RabbitMqNode&) = delete;
    RabbitMqNode& operator=(const RabbitMqNode&) = delete;

    std::string uri() const;
    std::string vhost() const;
    void kill();
    void restart();
    // rabbitmqctl on the node.
    std::string ctl(const std::string& args) const;

private:
    std::string node(const std::string& command, const std::string& args = {}) const;
    Hosts& hosts_;
    std::string host_;
    std::string dir_;
};

// The `broker` (or `database`) component of an instance's GET /health/ready
// ("" if it did not answer).
std::string readiness(const e2e::Daemon& d, const std::string& component);

}  // namespace cluster
