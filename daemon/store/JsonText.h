#pragma once

#include <map>
#include <string>

namespace orderpay {

/// A flat object of strings as JSON text and back: how the store keeps an
/// order's metadata and an outbox row's AMQP headers in one column.
std::string stringMapToJson(const std::map<std::string, std::string>& map);
/// Throws Poco::Exception if `text` is not such an object.
std::map<std::string, std::string> stringMapFromJson(const std::string& text);

}  // namespace orderpay
