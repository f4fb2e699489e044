#pragma once

#include "domain/Order.h"

#include <map>
#include <string>
#include <vector>

namespace orderpay {

/// The JSON texts the store keeps in single columns: an order's items and
/// metadata, an outbox row's AMQP headers. Written by Poco's PrintHandler
/// and read back by Poco's parser into the values directly, without a
/// Poco::JSON tree in between (every read of an order parses two of them).
/// Reading throws Poco::Exception for a text of any other shape.

/// A flat object of strings.
std::string stringMapToJson(const std::map<std::string, std::string>& map);
std::map<std::string, std::string> stringMapFromJson(const std::string& text);

/// An array of {"sku", "quantity", "unit_amount"} objects.
std::string itemsToJson(const std::vector<OrderItem>& items);
std::vector<OrderItem> itemsFromJson(const std::string& text);

}  // namespace orderpay
