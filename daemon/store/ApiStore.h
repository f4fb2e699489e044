#pragma once

#include "domain/Order.h"
#include "store/Records.h"

#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace orderpay {

/// What the HTTP API reads and writes. A write never blocks its caller:
/// it is handed to the store's writer, and the callback is told once, on
/// the writer's thread, how it ended; it must only hand the outcome on.
/// A state change, its events and the message announcing it are one
/// transaction, committed (and synced) before the callback hears of it.
class ApiStore {
public:
    /// How a request's write ended: the first answer if its
    /// Idempotency-Key was used before with the same request (nothing was
    /// stored then), or what it threw.
    using Written = std::function<void(std::optional<StoredAnswer> replay, std::exception_ptr error)>;
    using Done = std::function<void(std::exception_ptr error)>;

    virtual ~ApiStore() = default;

    /// Stores a new order (status queued) and its queue message. An
    /// Idempotency-Key used before with another request fails it with
    /// IdempotencyMismatch.
    virtual void createOrder(Order order, std::optional<IdempotencyRecord> idem, Written then) = 0;
    /// Stores a payment for an existing order; NotFound (no such order) or
    /// Conflict (the order takes no payments). The payment is queued at once
    /// if the order is awaiting_payment, else held until it is.
    virtual void createPayment(Payment payment, std::optional<IdempotencyRecord> idem, Written then) = 0;
    /// Cancels a queued or awaiting_payment order, rejecting its held
    /// payments; NotFound or Conflict otherwise.
    virtual void cancelOrder(const std::string& id, Done then) = 0;

    /// An order with its payments and events, read from one commit.
    virtual std::optional<Order> getOrder(const std::string& id) = 0;
    virtual std::optional<Payment> getPayment(const std::string& id) = 0;
    /// Newest first, ids below `after` only (empty: from the newest); the
    /// orders come without payments and events.
    virtual std::vector<Order> listOrders(std::optional<OrderStatus> status, int limit, const std::string& after) = 0;
};

}  // namespace orderpay
