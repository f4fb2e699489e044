#pragma once

#include "broker/Broker.h"
#include "common/PeriodicThread.h"
#include "http/Auth.h"
#include "http/HttpServer.h"
#include "http/Listener.h"
#include "http/Service.h"
#include "settings/Settings.h"
#include "store/Store.h"
#include "systemd/Watchdog.h"
#include "webhooks/Dispatcher.h"
#include "work/Workers.h"

#include <memory>
#include <string>

namespace orderpay {

/// The running daemon: every part, each an owner whose destruction stops
/// and joins what it started. Built in start-up order, members destroyed in
/// the reverse: so a start that fails part-way unwinds exactly what it had
/// built, and a stop is the destruction.
///
///   1. the listening socket (bound first: a port in use fails at once)
///   2. the store: database opened and migrated, its writer thread
///   3. the broker and its threads
///   4. the workers, and the webhook dispatcher
///   5. the status board (samples the counts once a second)
///   6. the HTTP server's event loops, on the bound socket
///   7. the systemd watchdog and STATUS=
///   8. housekeeping: expired idempotency keys, free memory back to the system
///
/// Stopping: no new requests (answers owed are sent), workers finish or
/// hand back their messages, the broker stops, the writer commits what it
/// holds.
class Runtime {
public:
    /// Throws what stopped the start, its message one line for the
    /// operator naming the thing that failed.
    Runtime(const Settings& settings, http::Auth& auth);
    ~Runtime();
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    /// One line for the log: where it listens, the database, the broker.
    std::string summary() const;

private:
    void sweep(unsigned tick);

    const Settings& settings_;
    http::Listener listener_;
    std::unique_ptr<Store> store_;
    /// Gone after everything that may commit a status change (the workers,
    /// the broker's consumers), before the store: its wake-up is called
    /// from the store's commits.
    std::unique_ptr<webhooks::Dispatcher> webhooks_;
    std::unique_ptr<Broker> broker_;
    std::unique_ptr<Workers> workers_;
    std::unique_ptr<StatusBoard> status_;
    std::unique_ptr<http::Service> service_;
    std::unique_ptr<http::HttpServer> server_;
    std::unique_ptr<systemd::Watchdog> watchdog_;
    unsigned sweeps_ = 0;
    PeriodicThread sweeper_;
};

}  // namespace orderpay
