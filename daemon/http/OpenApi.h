#pragma once

#include <string_view>

namespace orderpay::http {

/// The API's OpenAPI 3.1 description (daemon/http/openapi.json), compiled in
/// as it is: OpenApi.cpp is generated from the file at build time
/// (http/page/embed.cmake), so GET /openapi.json serves the checked source.
std::string_view openApiDocument();

}  // namespace orderpay::http
