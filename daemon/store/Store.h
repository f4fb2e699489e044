#pragma once

#include "settings/Settings.h"
#include "store/AdminStore.h"
#include "store/ApiStore.h"
#include "store/OutboxStore.h"
#include "store/QueueStore.h"
#include "store/StoreHealth.h"
#include "store/WebhookStore.h"
#include "store/WorkStore.h"

#include <functional>
#include <memory>
#include <string>

namespace orderpay {

/// The database, reached through one interface per role: the HTTP API,
/// the workers, the embedded queue, the RabbitMQ outbox, health, the
/// operator's routes. Everything
/// the daemon keeps is in it; each implementation (SQLite today) provides
/// every role with the same transactions and guarantees.
///
/// Owns its writer thread: opening starts it, destruction stops it after
/// the work handed to it has committed.
class Store {
public:
    /// Opens (and migrates) the database that `settings` names. Throws
    /// StoreUnavailable naming the database when it cannot be opened or
    /// written, PermanentError when its schema is newer than this program's.
    static std::unique_ptr<Store> open(const StoreSettings& settings);

    virtual ~Store() = default;

    virtual ApiStore& api() = 0;
    virtual WorkStore& work() = 0;
    virtual QueueStore& queue() = 0;
    virtual OutboxStore& outbox() = 0;
    virtual StoreHealth& health() = 0;
    virtual AdminStore& admin() = 0;
    virtual WebhookStore& webhooks() = 0;

    /// Told after each commit that added a message to `queue`, on the
    /// writer's thread or the committing caller's: it must only wake
    /// whoever delivers it. Set before the store is used by other threads.
    virtual void setMessageListener(std::function<void(const std::string& queue)> listener) = 0;

    /// "SQLite database /var/lib/orderpay/orderpay.db", for the log.
    virtual std::string describe() const = 0;
};

}  // namespace orderpay
