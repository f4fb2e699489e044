#include "app/OrderpayApp.h"

#include "app/Config.h"
#include "broker/EmbeddedBroker.h"
#include "broker/RabbitMqBroker.h"
#include "domain/Clock.h"
#include "domain/Errors.h"
#include "http/Auth.h"
#include "http/HttpServer.h"
#include "logging/Log.h"
#include "logging/Logging.h"
#include "store/Committer.h"
#include "store/Database.h"
#include "store/OrderStore.h"
#include "systemd/Notifier.h"
#include "systemd/Watchdog.h"
#include "work/ConsumerTask.h"
#include "work/OrderProcessor.h"

#include <Poco/Net/IPAddress.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/TaskManager.h>
#include <Poco/ThreadPool.h>
#include <Poco/Util/HelpFormatter.h>
#include <Poco/Util/Option.h>

#include <atomic>
#include <csignal>
#include <iostream>
#include <malloc.h>
#include <pthread.h>

#ifndef ORDERPAY_VERSION
#define ORDERPAY_VERSION "unknown"
#endif

/// jemalloc's control interface, if orderpayd is linked with it (the
/// default build; not the sanitizers' or the tests' programs).
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

namespace orderpay {
namespace {

/// Gives the memory the allocator holds free back to the system: every
/// arena of jemalloc's ("arena.<MALLCTL_ARENAS_ALL>.purge"), or glibc's.
void releaseFreeMemory()
{
    if (mallctl != nullptr) mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
    else malloc_trim(0);
}

}  // namespace

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
        help.setUsage("[--config=FILE] [-D key=value]... [--check-config] [--version] [--help]");
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
        logLine(logger(), Poco::Message::PRIO_FATAL, std::string("cannot start: ") + e.what());
        return EXIT_SOFTWARE;
    }
}

int OrderpayApp::checkConfig()
{
    try {
        const Settings s = Config::load(configFile_, configGiven_, overrides_);
        if (!s.http.authTokenFile.empty()) http::Auth auth(s.http.authTokenFile);
        std::cout << configFile_ << ": ok" << std::endl;
        return 0;
    } catch (const ConfigError& e) {
        std::cout << e.what();
        return 1;
    } catch (const std::exception& e) {
        std::cout << configFile_ << ": http.auth.token_file: " << e.what() << std::endl;
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
                    (auth.enabled() ? ", tokens re-read from " + fresh.http.authTokenFile : ""));
    } catch (const std::exception& e) {
        logLine(log, Poco::Message::PRIO_ERROR,
                std::string("reload failed, the previous settings stay: ") + e.what());
    }
}

int OrderpayApp::serve(const Settings& settings)
{
    Poco::Logger& log = Poco::Logger::get("orderpay");

    // SIGHUP means reload. Block it before any thread starts, so every
    // thread inherits the mask and only the reload thread receives it.
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, nullptr);
    // The stop signals too: waitForTerminationRequest() blocks them only when
    // it is called, after start-up. A SIGTERM before that - systemd stopping
    // a starting service, a test quick to stop it - took the default action
    // and killed the process (exit 143, seen under ASan). Blocked here, it
    // waits until the main thread is ready to stop in order.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGQUIT);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);

    // Refuse an open door before opening anything.
    const bool loopback = Poco::Net::SocketAddress(settings.http.host, settings.http.port).host().isLoopback();
    if (!loopback && settings.http.authTokenFile.empty() && !settings.http.allowUnauthenticated) {
        logLine(log, Poco::Message::PRIO_FATAL,
                "refusing to listen on " + settings.http.host +
                    " without authentication: set http.auth.token_file, or http.allow_unauthenticated = true "
                    "if something else guards this address");
        return EXIT_CONFIG;
    }
    if (settings.store.kind != "sqlite") {
        logLine(log, Poco::Message::PRIO_FATAL,
                "store.kind=" + settings.store.kind + " is not available in this version; use store.kind=sqlite");
        return EXIT_CONFIG;
    }
    http::Auth auth(settings.http.authTokenFile);

    // Start-up order: store, broker, workers, HTTP. Shutdown is the reverse.
    // Opening the store may migrate it, which can take a while on a large
    // one; so may re-queueing the messages a killed daemon had leased.
    systemd::StartupKeepAlive starting;
    Database db(settings.store);
    Committer committer(db, settings.store.groupCommit, settings.store.maxBatch);
    OrderStore store(db, committer);
    std::unique_ptr<Broker> brokerPtr;
    if (settings.broker.kind == "rabbitmq") {
        brokerPtr = std::make_unique<RabbitMqBroker>(db, committer, settings.broker, settings.work);
    } else {
        brokerPtr = std::make_unique<EmbeddedBroker>(db, committer, settings.work);
    }
    Broker& broker = *brokerPtr;
    store.setMessageListener([&broker](const std::string& queue) { broker.notifyPublished(queue); });
    broker.start();

    OrderProcessor orders(store, settings.work);
    PaymentProcessor payments(store);
    // The workers get a pool of their own: joinAll() on Poco's default pool
    // would also wait for threads that never end (SessionPool's janitor).
    const int workerCount = settings.work.orderWorkers + settings.work.paymentWorkers;
    Poco::ThreadPool workerPool("workers", workerCount, workerCount);
    Poco::TaskManager tasks(workerPool);
    std::vector<const ConsumerTask*> workers;
    auto startWorker = [&](const std::string& name, const char* queue, MessageHandler& handler) {
        auto* task = new ConsumerTask(name, broker, queue, handler, settings.work.maxAttempts);
        workers.push_back(task);
        tasks.start(task);  // the TaskManager owns it until joinAll()
    };
    for (int i = 0; i < settings.work.orderWorkers; ++i) startWorker("orders-" + std::to_string(i + 1), kOrdersQueue, orders);
    for (int i = 0; i < settings.work.paymentWorkers; ++i)
        startWorker("payments-" + std::to_string(i + 1), kPaymentsQueue, payments);

    http::Service service{store, broker, committer, settings, auth};
    http::HttpServer server(service, settings.http);
    server.start();
    systemd::Watchdog watchdog(settings.http.host, server.port(), workers, broker);
    watchdog.start();
    // The database is open and migrated, the port bound and served.
    starting.stop();
    systemd::ready();
    logLine(log, Poco::Message::PRIO_NOTICE,
            "orderpayd " ORDERPAY_VERSION " listening on " + settings.http.host + ":" + std::to_string(server.port()) +
                ", database " + db.path() + ", broker " + broker.name() + ", " +
                std::to_string(settings.work.orderWorkers) + " order and " +
                std::to_string(settings.work.paymentWorkers) + " payment workers" +
                (auth.enabled() ? ", bearer auth on" : ""));

    // While waiting for the stop signal: expired idempotency keys are swept
    // once a minute, and every 2 s memory the allocator holds free goes
    // back to the system (allocators keep freed pages in their arenas: under
    // steady load the RSS crept up by the fragments; the soak campaign's
    // 10-minute run saw +16 %). Every 10 s was not enough: a burst (list
    // pages of 200 orders) held 1-2 MB for up to 10 s after it was freed.
    std::thread sweeper;
    std::mutex sweepMutex;
    std::condition_variable sweepWake;
    bool stopping = false;
    sweeper = std::thread([&] {
        pthread_setname_np(pthread_self(), "sweeper");
        std::unique_lock lock(sweepMutex);
        for (unsigned tick = 1; !sweepWake.wait_for(lock, std::chrono::seconds(2), [&] { return stopping; }); ++tick) {
            lock.unlock();
            if (tick % 30 == 0) {  // once a minute
                try {
                    store.purgeIdempotencyKeys(clock::nowMillis() - settings.http.idempotencyTtl.count());
                } catch (const std::exception& e) {
                    logLine(log, Poco::Message::PRIO_WARNING, std::string("idempotency key sweep failed: ") + e.what());
                }
            }
            releaseFreeMemory();  // a few milliseconds for a heap of this size
            lock.lock();
        }
    });

    std::atomic<bool> reloadStop{false};
    std::thread reloader([&] {
        pthread_setname_np(pthread_self(), "reloader");
        const timespec tick{0, 200 * 1000 * 1000};
        while (!reloadStop) {
            if (sigtimedwait(&hup, nullptr, &tick) == SIGHUP) reload(auth);
        }
    });

    waitForTerminationRequest();
    systemd::stopping();
    reloadStop = true;
    reloader.join();
    watchdog.stop();
    logLine(log, Poco::Message::PRIO_NOTICE, "stopping: no new requests; in-flight work finishes or goes back to the queue");

    {
        std::lock_guard lock(sweepMutex);
        stopping = true;
    }
    sweepWake.notify_all();
    sweeper.join();
    server.stop();
    tasks.cancelAll();
    broker.stop();
    tasks.joinAll();
    committer.stop();
    logLine(log, Poco::Message::PRIO_NOTICE, "stopped");
    return EXIT_OK;
}

}  // namespace orderpay
