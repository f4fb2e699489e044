#pragma once

#include "app/Settings.h"
#include "broker/Broker.h"
#include "http/Auth.h"
#include "store/OrderStore.h"

namespace orderpay::http {

/// All that request handlers may touch: the store, the broker's state, the
/// settings, and auth. They never see the application.
struct Service {
    OrderStore& store;
    Broker& broker;
    Committer& committer;
    const Settings& settings;
    Auth& auth;
};

}  // namespace orderpay::http
