#pragma once

#include "http/ApiHandler.h"


namespace orderpay::http {

/// /health/live and /health/ready. Readiness proves the database takes a
/// real write (a full disk or a read-only file fails it) and the broker is
/// connected; the write probe is cached for a second so a busy load
/// balancer cannot turn health checks into a write load.
class HealthHandler : public ApiHandler {
public:
    HealthHandler(Service& service, std::string route, bool ready);

protected:
    void handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override;

private:
    bool databaseWritable();
    bool ready_;
};

/// /metrics in the Prometheus text format.
class MetricsHandler : public ApiHandler {
public:
    explicit MetricsHandler(Service& service);

protected:
    void handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override;
};

}  // namespace orderpay::http
