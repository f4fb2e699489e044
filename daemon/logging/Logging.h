#pragma once

#include "settings/Settings.h"

namespace orderpay {

/// Points the root logger at the configured target and level. Called once
/// at start and again on reload (level only).
void setupLogging(const LoggingSettings& settings);
void setLogLevel(const std::string& level);

}  // namespace orderpay
