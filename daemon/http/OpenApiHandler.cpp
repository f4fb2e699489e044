#include "http/OpenApiHandler.h"

#include "http/OpenApi.h"
#include "http/Json.h"

namespace orderpay::http {

OpenApiHandler::OpenApiHandler(Service& service) : ApiHandler(service, "/openapi.json", Access::Open) {}

void OpenApiHandler::handle(Poco::Net::HTTPServerRequest&, Poco::Net::HTTPServerResponse& response)
{
    // A HEAD is answered as every route answers it (the GET of the router).
    sendJson(response, 200, std::string(openApiDocument()));
}

}  // namespace orderpay::http
