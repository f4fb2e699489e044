#pragma once

#include "store/postgresql/PgConnection.h"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>

#include <unistd.h>

namespace orderpay::test {

/// A PostgreSQL server started by tests/postgresql/postgresql-node, as its
/// env file describes it.
struct PostgresqlNode {
    std::string dir;
    std::string uri;  // postgresql://user:password@127.0.0.1:port/db
    std::string password;
    int port = 0;

    static PostgresqlNode fromEnv(const std::string& dir)
    {
        std::ifstream in(dir + "/env");
        if (!in) throw std::runtime_error("cannot read " + dir + "/env (is the server started?)");
        std::map<std::string, std::string> values;
        for (std::string line; std::getline(in, line);) {
            const auto eq = line.find('=');
            if (eq != std::string::npos) values[line.substr(0, eq)] = line.substr(eq + 1);
        }
        PostgresqlNode node;
        node.dir = dir;
        node.uri = values["POSTGRESQL_URI"];
        node.password = values["POSTGRESQL_PASSWORD"];
        node.port = std::atoi(values["POSTGRESQL_PORT"].c_str());
        return node;
    }

    /// Runs `postgresql-node COMMAND DIR [ARGS]`; true if it succeeded.
    bool run(const std::string& command, const std::string& args = {}) const
    {
        const std::string cmd = "'" + std::string(ORDERPAY_POSTGRESQL_NODE_SCRIPT) + "' " + command + " '" + dir + "' " +
                                args + " > '" + dir + "." + command + ".out' 2>&1";
        return std::system(cmd.c_str()) == 0;
    }
};

/// The suite's server (the "postgresql: start" fixture; its folder in
/// ORDERPAY_TEST_POSTGRESQL_DIR).
inline const PostgresqlNode& suitePostgresql()
{
    static const PostgresqlNode node = [] {
        const char* dir = std::getenv("ORDERPAY_TEST_POSTGRESQL_DIR");
        if (dir == nullptr) throw std::runtime_error("ORDERPAY_TEST_POSTGRESQL_DIR is not set: run the tests with ctest");
        return PostgresqlNode::fromEnv(dir);
    }();
    return node;
}

/// A database of one test's own on the suite's server, dropped when the
/// test ends.
class TestDatabase {
public:
    TestDatabase()
    {
        const PostgresqlNode& node = suitePostgresql();
        name_ = "test_" + std::to_string(::getpid()) + "_" + std::to_string(++counter());
        admin().run("CREATE DATABASE " + name_);
        uri_ = node.uri.substr(0, node.uri.rfind('/') + 1) + name_;
    }
    ~TestDatabase()
    {
        try {
            admin().run("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
        } catch (const std::exception&) {
            // Left for the suite's server to be removed with.
        }
    }
    TestDatabase(const TestDatabase&) = delete;
    TestDatabase& operator=(const TestDatabase&) = delete;

    const std::string& uri() const { return uri_; }

private:
    static int& counter()
    {
        static int n = 0;
        return n;
    }
    static pg::Connection& admin()
    {
        static pg::Connection c(suitePostgresql().uri, std::chrono::seconds(5));
        return c;
    }

    std::string name_;
    std::string uri_;
};

/// A server of one test's own, for tests that kill or stop it; removed
/// (stopped, its files deleted) when the test ends, and by its watcher if
/// the test process dies first.
class PrivatePostgresql {
public:
    explicit PrivatePostgresql(const std::string& dir)
    {
        node_.dir = dir;
        if (!node_.run("start", std::to_string(::getpid())))
            throw std::runtime_error("postgresql-node start failed; see " + dir + ".start.out");
        node_ = PostgresqlNode::fromEnv(dir);
    }
    ~PrivatePostgresql() { node_.run("remove"); }
    PrivatePostgresql(const PrivatePostgresql&) = delete;
    PrivatePostgresql& operator=(const PrivatePostgresql&) = delete;

    const PostgresqlNode& node() const { return node_; }

private:
    PostgresqlNode node_;
};

}  // namespace orderpay::test
