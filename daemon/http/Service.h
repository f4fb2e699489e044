#pragma once

#include "admin/StatusBoard.h"
#include "broker/Broker.h"
#include "http/Auth.h"
#include "settings/Settings.h"
#include "store/AdminStore.h"
#include "store/ApiStore.h"
#include "store/StoreHealth.h"
#include "store/WebhookStore.h"

namespace orderpay::webhooks {
class Dispatcher;
}

namespace orderpay::http {

/// All that request handlers may touch: the store's API, health and admin
/// roles, the broker's status, the status board, the settings, and auth.
/// They never see the application.
struct Service {
    ApiStore& store;
    StoreHealth& health;
    AdminStore& admin;
    WebhookStore& webhooks;
    StatusBoard& status;
    const Broker& broker;
    const Settings& settings;
    Auth& auth;
    /// Its metrics (null in tests that run no dispatcher).
    const webhooks::Dispatcher* dispatcher = nullptr;
};

}  // namespace orderpay::http
