#pragma once

#include "domain/Order.h"

#include <chrono>
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

/// A message of the orders or order-steps queue: its order, and for a
/// step's timer the step it carries on (empty: the order's start).
struct OrderWork {
    std::string orderId;
    std::string step;
};

/// How an order is processed: its steps in order, the time each takes,
/// and how many orders may be in processing at once.
struct ProcessingPlan {
    std::vector<std::string> steps;
    std::vector<std::chrono::milliseconds> times;  // one per step
    std::int64_t concurrency = 10000;
    std::string instance;  // instance.name, recorded in the step events
    bool instant() const
    {
        for (auto t : times)
            if (t.count() > 0) return false;
        return true;
    }
};

/// What carrying an order on did, for the log lines and metrics after the
/// commit.
struct AdvanceResult {
    OrderStatus before = OrderStatus::Queued;
    bool started = false;                // queued -> processing now
    std::vector<std::string> completed;  // steps whose effect was done now, in order
    std::vector<std::string> begun;      // steps started now, in order
    bool begunFirst = false;             // a step was begun before any completed (else they alternate)
    std::int64_t dueAt = 0;              // the last begun step's timer (if not finished)
    std::int64_t lateMs = -1;            // how late the waited-for step ran (-1: none waited)
    bool finished = false;               // reached awaiting_payment
    bool releasedPayments = false;       // payments held for the order (if any) were queued
    bool stale = false;                  // not the order's current message: nothing changed
    bool noCapacity = false;             // not started: orders.concurrency orders are in processing
};

/// Per message of a batch: its result, or what it threw.
struct AdvanceOutcome {
    AdvanceResult result;
    std::exception_ptr error;
};

}  // namespace orderpay
