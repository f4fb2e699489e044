#pragma once

#include "domain/Order.h"

#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <vector>

namespace orderpay {

/// The answer a POST gave, kept under its Idempotency-Key for replay.
struct StoredAnswer {
    int status = 0;
    std::string location;
    std::string body;
};

struct IdempotencyRecord {
    std::string key;
    std::string requestHash;
    StoredAnswer answer;
    std::int64_t ttlMillis = 0;
};

/// How processing a payment ended.
struct PaymentOutcome {
    PaymentStatus status = PaymentStatus::Queued;
    std::optional<std::string> reason;
    std::string orderId;
    bool alreadyFinal = false;  // a redelivery: nothing was changed
};

/// What processing an order in one go did: the status it was found in,
/// the steps run now (those done by an earlier delivery are skipped), and
/// whether it reached awaiting_payment.
struct InstantResult {
    OrderStatus before = OrderStatus::Queued;
    std::vector<std::string> stepsRun;
    bool finished = false;
    bool releasedPayments = false;  // payments held for the order were queued
};

/// Per order of a batch: its result, or what it threw.
struct InstantOutcome {
    InstantResult result;
    std::exception_ptr error;
};

}  // namespace orderpay
