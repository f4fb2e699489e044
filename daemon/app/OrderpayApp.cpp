#include "app/OrderpayApp.h"

#include "app/Config.h"
#include "app/Runtime.h"
#include "common/PeriodicThread.h"
#include "http/Auth.h"
#include "logging/Log.h"
#include "logging/Logging.h"
#include "store/copy/SqliteToPostgresql.h"
#include "systemd/Notifier.h"

#include <Poco/Util/HelpFormatter.h>
#include <Poco/Util/Option.h>

#include <csignal>
#include <ctime>
#include <iostream>
#include <memory>
#include <pthread.h>

#ifndef ORDERPAY_VERSION
#define ORDERPAY_VERSION "unknown"
#endif

namespace orderpay {

using Poco::Util::Option;

OrderpayApp::OrderpayApp()
{
    // The daemon reads its own configuration; Poco's default loading of
    // <program>.properties next to the binary would be a surprise.
    setUnixOptions(true);
}

void OrderpayApp::defineOptions(Poco::Util::OptionSet& options)
{
    // ServerApplication's own options (--daemon, --pidfile) are left out
    // on purpose: systemd supervises orderpayd in the foreground.
    options.addOption(Option("config", "c", "configuration file (default /etc/orderpay/orderpay.properties)")
                          .required(false)
                          .repeatable(false)
                          .argument("FILE"));
    options.addOption(Option("define", "D", "override one configuration key")
                          .required(false)
                          .repeatable(true)
                          .argument("key=value"));
    options.addOption(
        Option("check-config", "", "validate the configuration, print what is wrong, exit 0 or 1").required(false));
    options.addOption(Option("copy-to-postgresql", "",
                             "copy store.sqlite.path into the empty PostgreSQL database store.postgresql.uri "
                             "(the daemon stopped), check the copy, exit 0 or 1")
                          .required(false));
    options.addOption(Option("version", "v", "print the version and exit").required(false));
    options.addOption(Option("help", "h", "print this help and exit").required(false));
}

void OrderpayApp::handleOption(const std::string& name, const std::string& value)
{
    if (name == "config") {
        configFile_ = value;
        configGiven_ = true;
    } else if (name == "define") {
        const auto eq = value.find('=');
        if (eq == std::string::npos || eq == 0) {
            usageError_ = "-D expects key=value, got '" + value + "'";
        } else {
            overrides_[value.substr(0, eq)] = value.substr(eq + 1);
        }
    } else if (name == "check-config") {
        checkOnly_ = true;
    } else if (name == "copy-to-postgresql") {
        copyToPostgresql_ = true;
    } else if (name == "version") {
        versionRequested_ = true;
        stopOptionsProcessing();
    } else if (name == "help") {
        helpRequested_ = true;
        stopOptionsProcessing();
    }
}

int OrderpayApp::main(const std::vector<std::string>& args)
{
    if (helpRequested_) {
        Poco::Util::HelpFormatter help(options());
        help.setCommand(commandName());
        help.setUsage("[--config=FILE] [-D key=value]... [--check-config] [--copy-to-postgresql] [--version] [--help]");
        help.setHeader("orderpayd: order and payment processing daemon. Runs in the foreground.");
        help.setFooter("Configuration reference: /etc/orderpay/orderpay.properties; API: /usr/share/doc/orderpay.");
        help.format(std::cout);
        return EXIT_OK;
    }
    if (versionRequested_) {
        std::cout << "orderpayd " << ORDERPAY_VERSION << std::endl;
        return EXIT_OK;
    }
    if (!usageError_.empty() || !args.empty()) {
        std::cerr << "orderpayd: " << (usageError_.empty() ? "unexpected argument '" + args.front() + "'" : usageError_)
                  << " (see --help)" << std::endl;
        return EXIT_USAGE;
    }
    if (checkOnly_) return checkConfig();
    if (copyToPostgresql_) return copyToPostgresql();

    Settings settings;
    try {
        settings = Config::load(configFile_, configGiven_, overrides_);
    } catch (const ConfigError& e) {
        std::cerr << "orderpayd: the configuration is not valid:\n" << e.what();
        return EXIT_CONFIG;
    }
    setupLogging(settings.logging);
    try {
        return serve(settings);
    } catch (const std::exception& e) {
        // What failed, in one line that names it (the address, the
        // database); everything built before it has been stopped.
        logLine(Poco::Logger::get("orderpay"), Poco::Message::PRIO_FATAL, e.what());
        return EXIT_SOFTWARE;
    }
}

int OrderpayApp::checkConfig()
{
    try {
        Config::load(configFile_, configGiven_, overrides_);
        std::cout << configFile_ << ": ok" << std::endl;
        return 0;
    } catch (const ConfigError& e) {
        std::cout << e.what();
        return 1;
    }
}

int OrderpayApp::copyToPostgresql()
{
    Settings settings;
    try {
        settings = Config::load(configFile_, configGiven_, overrides_);
    } catch (const ConfigError& e) {
        std::cerr << "orderpayd: the configuration is not valid:\n" << e.what();
        return EXIT_CONFIG;
    }
    try {
        const auto tables = copySqliteToPostgresql(settings.store, std::cout);
        std::cout << "checked: every table has the same rows in PostgreSQL (count, SHA-256 of the rows in key order):\n";
        for (const auto& t : tables) std::cout << "  " << t.table << " " << t.rows << " " << t.digest << "\n";
        std::cout << "done: set store.kind = postgresql to run on the copy" << std::endl;
        return EXIT_OK;
    } catch (const std::exception& e) {
        std::cerr << "orderpayd: the copy failed, nothing was committed: " << e.what() << std::endl;
        return 1;
    }
}

void OrderpayApp::reload(http::Auth& auth)
{
    Poco::Logger& log = Poco::Logger::get("orderpay");
    systemd::reloading();
    // READY=1 again on every path, failed reloads included: the daemon
    // keeps running on its previous settings.
    struct ReadyAgain {
        ~ReadyAgain() { systemd::ready(); }
    } readyAgain;
    try {
        const Settings fresh = Config::load(configFile_, configGiven_, overrides_);
        auth.reload();
        setLogLevel(fresh.logging.level);
        logLine(log, Poco::Message::PRIO_NOTICE,
                "reloaded: logging.level " + fresh.logging.level +
                    (auth.enabled() ? ", tokens re-read from " + fresh.http.authTokenFile : "") +
                    (auth.adminEnabled() ? ", admin tokens re-read from " + fresh.http.adminTokenFile : ""));
    } catch (const std::exception& e) {
        logLine(log, Poco::Message::PRIO_ERROR,
                std::string("reload failed, the previous settings stay: ") + e.what());
    }
}

int OrderpayApp::serve(const Settings& settings)
{
    Poco::Logger& log = Poco::Logger::get("orderpay");

    // SIGHUP means reload. Block it before any thread starts, so every
    // thread inherits the mask and only the reloader receives it.
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, nullptr);
    // The stop signals too: waitForTerminationRequest() blocks them only when
    // it is called, after start-up. A SIGTERM before that (systemd stopping
    // a starting service) would take the default action and end the process
    // (exit 143). Blocked here, it waits until start-up is over, and the
    // daemon then stops in order.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGQUIT);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);

    std::unique_ptr<http::Auth> auth;
    try {
        auth = std::make_unique<http::Auth>(settings.http.authTokenFile, settings.http.adminTokenFile);
    } catch (const std::exception& e) {
        // Checked by Config a moment ago: a file changed since.
        logLine(log, Poco::Message::PRIO_FATAL, std::string("http.auth: ") + e.what());
        return EXIT_CONFIG;
    }

    std::unique_ptr<Runtime> runtime;
    {
        // Opening the store may migrate it, which can take a while on a
        // large one: systemd is asked for more time meanwhile.
        systemd::StartupKeepAlive starting;
        runtime = std::make_unique<Runtime>(settings, *auth);
    }
    // The database is open and migrated, the port bound and served.
    systemd::ready();
    logLine(log, Poco::Message::PRIO_NOTICE,
            "orderpayd " ORDERPAY_VERSION " " + runtime->summary() + (auth->enabled() ? ", bearer auth on" : ""));

    PeriodicThread reloader("reloader", std::chrono::milliseconds(0), [&] {
        const timespec tick{0, 200 * 1000 * 1000};  // the reloader's chance to see it is stopping
        if (sigtimedwait(&hup, nullptr, &tick) == SIGHUP) reload(*auth);
    });
    reloader.start();

    waitForTerminationRequest();
    systemd::stopping();
    reloader.stop();
    logLine(log, Poco::Message::PRIO_NOTICE, "stopping: no new requests; in-flight work finishes or goes back to the queue");
    runtime.reset();
    logLine(log, Poco::Message::PRIO_NOTICE, "stopped");
    return EXIT_OK;
}

}  // namespace orderpay
