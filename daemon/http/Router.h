#pragma once

#include "http/Service.h"

#include <Poco/Net/HTTPRequestHandlerFactory.h>

namespace orderpay::http {

/// Maps method and path to a handler. Tried in order; a path that matches
/// with the wrong method gets 405 with Allow, anything else 404 (Poco's
/// own default would be 501).
class Router : public Poco::Net::HTTPRequestHandlerFactory {
public:
    explicit Router(Service& service) : service_(service) {}
    Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest& request) override;

private:
    Service& service_;
};

}  // namespace orderpay::http
