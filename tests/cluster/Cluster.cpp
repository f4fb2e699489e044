#include "Cluster.h"

#include "HttpClient.h"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

#include <sys/wait.h>
#include <unistd.h>

namespace cluster {
namespace {

std::string script(const std::string& relative) { return e2e::sourceDir() + "/tests/" + relative; }

std::string trimmed(std::string s)
{
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

// A value of a shell-syntax env file (KEY=value or KEY='value').
std::string envValue(const std::string& path, const std::string& key)
{
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind(key + "=", 0) != 0) continue;
        std::string v = line.substr(key.size() + 1);
        if (v.size() >= 2 && v.front() == '\'' && v.back() == '\'') v = v.substr(1, v.size() - 2);
        return v;
    }
    return {};
}

std::string owner() { return std::to_string(::getpid()); }

}  // namespace

std::string quoted(const std::string& word)
{
    std::string q = "'";
    for (char c : word) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

std::pair<int, std::string> shell(const std::string& command)
{
    std::string output;
    FILE* p = ::popen((command + " 2>&1").c_str(), "r");
    if (p == nullptr) return {-1, "popen failed"};
    char buffer[4096];
    while (std::size_t n = std::fread(buffer, 1, sizeof buffer, p)) output.append(buffer, n);
    const int status = ::pclose(p);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

std::string mustRun(const std::string& command)
{
    auto [code, output] = shell(command);
    INFO(command << "\n" << output);
    REQUIRE(code == 0);
    return trimmed(output);
}

// ---------------------------------------------------------------- Hosts

Hosts::Hosts(std::string dir, const std::vector<std::string>& names) : dir_(std::move(dir))
{
    std::string command = quoted(script("cluster/hosts")) + " up " + quoted(dir_) + " " + owner();
    for (const auto& n : names) command += " " + n;
    mustRun(command);
}

Hosts::~Hosts() { shell(quoted(script("cluster/hosts")) + " down " + quoted(dir_)); }

std::string Hosts::address(const std::string& name) const
{
    return mustRun(quoted(script("cluster/hosts")) + " address " + quoted(dir_) + " " + name);
}

std::string Hosts::netns(const std::string& name) const
{
    return mustRun(quoted(script("cluster/hosts")) + " netns " + quoted(dir_) + " " + name);
}

std::string Hosts::on(const std::string& name) const
{
    return quoted(script("cluster/hosts")) + " exec " + quoted(dir_) + " " + name;
}

void Hosts::cut(const std::string& name) { mustRun(quoted(script("cluster/hosts")) + " cut " + quoted(dir_) + " " + name); }

void Hosts::mend(const std::string& name)
{
    mustRun(quoted(script("cluster/hosts")) + " mend " + quoted(dir_) + " " + name);
}

// ---------------------------------------------------------------- PostgreSQL

PostgresqlServer::PostgresqlServer(Hosts& hosts, std::string host)
    : hosts_(hosts), host_(std::move(host)), dir_(hosts.dir() + "/" + host_)
{
    mustRun(hosts_.on(host_) + " env POSTGRESQL_ADDRESS=" + hosts_.address(host_) + " " +
            quoted(script("postgresql/postgresql-node")) + " start " + quoted(dir_) + " " + owner());
}

PostgresqlServer::PostgresqlServer(Hosts& hosts, std::string host, const PostgresqlServer& primary)
    : hosts_(hosts), host_(std::move(host)), dir_(hosts.dir() + "/" + host_)
{
    mustRun(hosts_.on(host_) + " env POSTGRESQL_ADDRESS=" + hosts_.address(host_) + " " +
            quoted(script("postgresql/postgresql-node")) + " standby " + quoted(dir_) + " " + quoted(primary.dir()) +
            " " + owner());
}

PostgresqlServer::~PostgresqlServer() { shell(hosts_.on(host_) + " " + quoted(script("postgresql/postgresql-node")) + " remove " + quoted(dir_)); }

std::string PostgresqlServer::node(const std::string& command, const std::string& args) const
{
    return mustRun(hosts_.on(host_) + " " + quoted(script("postgresql/postgresql-node")) + " " + command + " " +
                   quoted(dir_) + (args.empty() ? "" : " " + args));
}

std::string PostgresqlServer::env(const std::string& key) const { return envValue(dir_ + "/env", key); }

std::string PostgresqlServer::uri() const { return env("POSTGRESQL_URI"); }

std::string PostgresqlServer::hostPort() const { return hosts_.address(host_) + ":" + env("POSTGRESQL_PORT"); }

void PostgresqlServer::kill() { node("kill"); }

void PostgresqlServer::promote() { node("promote"); }

void PostgresqlServer::synchronous(bool on) { node("sync", on ? "on" : "off"); }

std::string failoverUri(const std::vector<const PostgresqlServer*>& servers)
{
    const auto& first = *servers.front();
    std::string hosts;
    for (const auto* s : servers) hosts += (hosts.empty() ? "" : ",") + s->hostPort();
    return "postgresql://" + first.env("POSTGRESQL_USER") + ":" + first.env("POSTGRESQL_PASSWORD") + "@" + hosts + "/" +
           first.env("POSTGRESQL_DB") + "?target_session_attrs=read-write";
}

// ---------------------------------------------------------------- RabbitMQ

RabbitMqNode::RabbitMqNode(Hosts& hosts, std::string host, const RabbitMqNode* seed)
    : hosts_(hosts), host_(std::move(host)), dir_(hosts.dir() + "/" + host_)
{
    const std::string prefix = hosts_.on(host_) + " env RABBITMQ_NODE_ADDRESS=" + hosts_.address(host_) + " " +
                               quoted(script("rabbitmq/rabbitmq-node"));
    if (seed == nullptr) mustRun(prefix + " start " + quoted(dir_) + " " + owner());
    else mustRun(prefix + " join " + quoted(dir_) + " " + quoted(seed->dir_) + " " + owner());
}

RabbitMqNode::~RabbitMqNode()
{
    shell(hosts_.on(host_) + " " + quoted(script("rabbitmq/rabbitmq-node")) + " stop " + quoted(dir_));
}

std::string RabbitMqNode::node(const std::string& command, const std::string& args) const
{
    return mustRun(hosts_.on(host_) + " " + quoted(script("rabbitmq/rabbitmq-node")) + " " + command + " " +
                   quoted(dir_) + (args.empty() ? "" : " " + args));
}

std::string RabbitMqNode::uri() const { return envValue(dir_ + "/env", "RABBITMQ_URI"); }

std::string RabbitMqNode::vhost() const { return envValue(dir_ + "/env", "RABBITMQ_VHOST"); }

void RabbitMqNode::kill() { node("kill"); }

void RabbitMqNode::restart() { node("restart"); }

std::string RabbitMqNode::ctl(const std::string& args) const { return node("ctl", args); }

// ---------------------------------------------------------------- daemons

std::string readiness(const e2e::Daemon& d, const std::string& component)
{
    try {
        e2e::HttpClient c(d.host(), d.port());
        c.setTimeout(std::chrono::seconds(2));
        auto r = c.get("/health/ready");
        auto o = r.jsonObject();
        if (!o) return {};
        auto components = e2e::getObject(o, "components");
        return components ? e2e::getString(components, component).value_or("") : std::string();
    } catch (const std::exception&) {
        return {};
    }
}

}  // namespace cluster
