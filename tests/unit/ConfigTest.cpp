#include "app/Config.h"
#include "broker/AmqpConnection.h"
#include "logging/JournalChannel.h"

#include <Poco/Message.h>

#include "TempDir.h"

#include <Poco/Environment.h>

#include <catch2/catch.hpp>

#include <fstream>

using namespace orderpay;

TEST_CASE("the shipped configuration is valid and states the defaults", "[config]")
{
    const Settings s = Config::load(ORDERPAY_CONFIG_PATH, true, {});
    const Settings defaults;
    CHECK(s.http.host == defaults.http.host);
    CHECK(s.http.port == 1212);
    CHECK(s.http.maxBodyBytes == 65536);
    CHECK(s.broker.kind == "embedded");
    CHECK(s.store.sqlitePath == "/var/lib/orderpay/orderpay.db");
    CHECK(s.work.processingTime == std::chrono::milliseconds(6000));
    CHECK(s.work.maxAttempts == 5);
    CHECK(s.http.idempotencyTtl == std::chrono::hours(24));
}

TEST_CASE("instance.name defaults to host and port, and is checked", "[config]")
{
    const Settings s = Config::load(ORDERPAY_CONFIG_PATH, true, {{"http.port", "4321"}});
    CHECK(s.instanceName == Poco::Environment::nodeName() + ":4321");
    CHECK(s.logging.instance == s.instanceName);
    CHECK(s.work.instance == s.instanceName);
    CHECK(Config::load(ORDERPAY_CONFIG_PATH, true, {{"instance.name", "db1:1212"}}).instanceName == "db1:1212");
    CHECK_THROWS_AS(Config::load(ORDERPAY_CONFIG_PATH, true, {{"instance.name", "two words"}}), ConfigError);
}

TEST_CASE("the shipped configuration documents every key", "[config]")
{
    std::ifstream in(ORDERPAY_CONFIG_PATH);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (const auto& key : Config::knownKeys()) {
        INFO(key);
        CHECK(text.find("\n" + key + " =") != std::string::npos);
    }
}

TEST_CASE("unknown keys and bad values are reported with source and key", "[config]")
{
    test::TempDir dir;
    const std::string file = dir.file("o.properties");
    std::ofstream(file) << "http.prot = 1212\norders.workers = 0\n";
    try {
        Config::load(file, true, {{"http.port", "x"}, {"logging.target", "syslog"}});
        FAIL("no error");
    } catch (const ConfigError& e) {
        const auto& p = e.problems();
        REQUIRE(p.size() == 4);
        auto has = [&](const std::string& source, const std::string& key) {
            for (const auto& q : p)
                if (q.source == source && q.key == key) return true;
            return false;
        };
        CHECK(has(file, "http.prot"));
        CHECK(has(file, "orders.workers"));
        CHECK(has("-D", "http.port"));
        CHECK(has("-D", "logging.target"));
    }
}

TEST_CASE("overrides win over the file, and a missing explicit file is an error", "[config]")
{
    test::TempDir dir;
    const std::string file = dir.file("o.properties");
    std::ofstream(file) << "http.port = 2000\n";
    CHECK(Config::load(file, true, {{"http.port", "3000"}}).http.port == 3000);
    CHECK_THROWS_AS(Config::load(dir.file("missing"), true, {}), ConfigError);
    CHECK(Config::load(dir.file("missing"), false, {}).http.port == 1212);
}

TEST_CASE("durations", "[config]")
{
    using namespace std::chrono;
    milliseconds d{};
    CHECK((Config::parseDuration("500ms", seconds(1), d) && d == milliseconds(500)));
    CHECK((Config::parseDuration("10s", seconds(1), d) && d == seconds(10)));
    CHECK((Config::parseDuration("24h", seconds(1), d) && d == hours(24)));
    CHECK((Config::parseDuration("30", seconds(1), d) && d == seconds(30)));
    CHECK_FALSE(Config::parseDuration("ten", seconds(1), d));
    CHECK_FALSE(Config::parseDuration("5 days", seconds(1), d));
    CHECK_FALSE(Config::parseDuration("-5s", seconds(1), d));
}

TEST_CASE("the RabbitMQ URI is checked, and its password never printed", "[config][rabbitmq]")
{
    const auto uri = AmqpUri::parse("amqp://shop:s3cret-pw@mq.example.org:5673/payments");
    CHECK(uri.user == "shop");
    CHECK(uri.password == "s3cret-pw");
    CHECK(uri.host == "mq.example.org");
    CHECK(uri.port == 5673);
    CHECK(uri.vhost == "payments");
    CHECK(uri.redacted().find("s3cret-pw") == std::string::npos);
    CHECK(uri.redacted() == "amqp://shop:***@mq.example.org:5673/payments");
    CHECK(AmqpUri::parse("amqp://u:p@localhost/").vhost == "/");

    try {
        Config::load("", false, {{"broker.kind", "rabbitmq"}, {"broker.rabbitmq.uri", "http://u:s3cret-pw@host/"}});
        FAIL("a bad URI was accepted");
    } catch (const ConfigError& e) {
        REQUIRE(e.problems().size() == 1);
        CHECK(e.problems()[0].key == "broker.rabbitmq.uri");
        CHECK(std::string(e.what()).find("s3cret-pw") == std::string::npos);
    }
}

TEST_CASE("broker.rabbitmq.uri may list the nodes of a cluster, one vhost for all", "[config][rabbitmq]")
{
    const auto nodes = AmqpUri::parseList("amqp://a:pw1@mq1:5672/shop, amqp://b:pw2@mq2:5673/shop,amqp://c:pw3@mq3/shop");
    REQUIRE(nodes.size() == 3);
    CHECK(nodes[0].host == "mq1");
    CHECK(nodes[1].user == "b");
    CHECK(nodes[1].port == 5673);
    CHECK(nodes[2].password == "pw3");
    CHECK(AmqpUri::parseList("amqp://u:p@one/").size() == 1);
    CHECK_THROWS_AS(AmqpUri::parseList("amqp://a:p@mq1/shop,amqp://b:p@mq2/other"), std::invalid_argument);
    CHECK_THROWS_AS(AmqpUri::parseList("amqp://a:p@mq1/shop,"), std::invalid_argument);
    try {
        Config::load("", false,
                     {{"broker.kind", "rabbitmq"}, {"broker.rabbitmq.uri", "amqp://u:s3cret-pw@h1/,http://u:s3cret-pw@h2/"}});
        FAIL("a bad URI in the list was accepted");
    } catch (const ConfigError& e) {
        REQUIRE(e.problems().size() == 1);
        CHECK(e.problems()[0].key == "broker.rabbitmq.uri");
        CHECK(std::string(e.what()).find("URI 2") != std::string::npos);
        CHECK(std::string(e.what()).find("s3cret-pw") == std::string::npos);
    }
}

TEST_CASE("broker.lease is a duration of at least a second, 15 s unless set", "[config]")
{
    CHECK(Config::load("", false, {}).broker.lease == std::chrono::seconds(15));
    CHECK(Config::load("", false, {{"broker.lease", "3s"}}).broker.lease == std::chrono::seconds(3));
    CHECK_THROWS_AS(Config::load("", false, {{"broker.lease", "200ms"}}), ConfigError);
}

TEST_CASE("journal priorities follow syslog's", "[logging]")
{
    CHECK(JournalChannel::syslogPriority(Poco::Message::PRIO_FATAL) == 2);
    CHECK(JournalChannel::syslogPriority(Poco::Message::PRIO_ERROR) == 3);
    CHECK(JournalChannel::syslogPriority(Poco::Message::PRIO_WARNING) == 4);
    CHECK(JournalChannel::syslogPriority(Poco::Message::PRIO_NOTICE) == 5);
    CHECK(JournalChannel::syslogPriority(Poco::Message::PRIO_INFORMATION) == 6);
    CHECK(JournalChannel::syslogPriority(Poco::Message::PRIO_TRACE) == 7);
}
