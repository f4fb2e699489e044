#pragma once

#include "http/ApiHandler.h"

namespace orderpay::http {

/// /payment/confirm (POST) and /payments/{id} (GET).
class PaymentsHandler : public ApiHandler {
public:
    enum class Action { Confirm, Get };

    PaymentsHandler(Service& service, std::string route, Action action, std::string id = {});

protected:
    void handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override;

private:
    Action action_;
    std::string id_;
};

}  // namespace orderpay::http
