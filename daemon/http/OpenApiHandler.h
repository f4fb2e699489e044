#pragma once

#include "http/ApiHandler.h"

namespace orderpay::http {

/// GET /openapi.json: the API's description (openApiDocument()), open to
/// all like the status page: it holds no data.
class OpenApiHandler : public ApiHandler {
public:
    explicit OpenApiHandler(Service& service);

protected:
    void handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override;
};

}  // namespace orderpay::http
