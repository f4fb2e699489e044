#pragma once

#include "broker/Broker.h"
#include "http/Auth.h"
#include "settings/Settings.h"
#include "store/ApiStore.h"
#include "store/StoreHealth.h"

namespace orderpay::http {

/// All that request handlers may touch: the store's API and health roles,
/// the broker's status, the settings, and auth. They never see the
/// application.
struct Service {
    ApiStore& store;
    StoreHealth& health;
    const Broker& broker;
    const Settings& settings;
    Auth& auth;
};

}  // namespace orderpay::http
