#pragma once

#include <string_view>

namespace orderpay::http::page {

/// The status page (daemon/http/page/status.html), compiled in as it is:
/// StatusPage.cpp is generated from the file at build time (embed.cmake).
std::string_view statusPage();

}  // namespace orderpay::http::page
