#pragma once

#include "http/ApiHandler.h"


namespace orderpay::http {

/// /health/live and /health/ready. Readiness proves the database takes a
/// real write (a full disk or a read-only file fails it) and the broker is
/// connected and answering. Neither waits: the write probe's last outcome
/// (at most one probe a second, so a busy load balancer cannot turn health
/// checks into a write load) and the broker's last status are reported.
class HealthHandler : public ApiHandler {
public:
    HealthHandler(Service& service, std::string route, bool ready);

protected:
    void handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override;

private:
    bool ready_;
};

/// /metrics in the Prometheus text format. Nothing of it waits on the
/// network or on the writer: queue depths come from the broker's last
/// look, counts from reads.
class MetricsHandler : public ApiHandler {
public:
    explicit MetricsHandler(Service& service);

protected:
    void handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override;
};

}  // namespace orderpay::http
