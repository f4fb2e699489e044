#pragma once

#include "domain/Order.h"

#include <Poco/Dynamic/Var.h>
#include <Poco/JSON/Object.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/URI.h>

#include <optional>
#include <string>
#include <vector>

namespace orderpay::http {

/// Reads a request body as docs/api.md states it: application/json only (415),
/// never more than `maxBytes` read (413), UTF-8 (400), valid JSON with the
/// byte offset of the first error (400). Throws ProblemException.
std::string readBody(Poco::Net::HTTPServerRequest& request, std::size_t maxBytes);
Poco::Dynamic::Var parseJson(const std::string& body);
/// The query parameters of a request target, decoded (400 if they cannot be).
Poco::URI::QueryParameters queryParameters(const std::string& uri);

/// The resources as JSON text, as the API answers them.
std::string orderJson(const Order& order, bool withDetails);
std::string paymentJson(const Payment& payment);
/// A page of GET /orders: {"orders": [...], "next": "/orders?..." or null}.
std::string orderListJson(const std::vector<Order>& orders, const std::optional<std::string>& next);
std::string toText(const Poco::JSON::Object::Ptr& object);

void sendJson(Poco::Net::HTTPServerResponse& response, int status, const std::string& body);

}  // namespace orderpay::http
