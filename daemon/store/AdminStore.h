#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace orderpay {

/// A message given up on (retry.max_attempts, or one that can never be
/// processed), kept until an operator replays it.
struct DeadLetter {
    std::int64_t id = 0;  // the message's row: "dl_<id>" in the API
    std::string queue;
    std::string orderId;    // of a message of orders or order-steps
    std::string paymentId;  // of a message of payments
    std::int64_t attempts = 0;
    std::string reason;     // the last error
    std::int64_t deadAt = 0;  // milliseconds since the epoch
};

/// Which dead letters a bulk replay takes: all fields optional.
struct DeadLetterFilter {
    std::string queue;
    std::string reasonContains;
};

/// What the operator routes read and change: counts kept as the writers
/// commit (never a count over a table), and the dead letters.
class AdminStore {
public:
    using Done = std::function<void(std::exception_ptr error)>;
    struct Replayed {
        std::int64_t matched = 0;
        std::int64_t replayed = 0;
    };

    virtual ~AdminStore() = default;

    /// Orders and payments by status ("orders" -> "paid" -> 9000): every
    /// status the counts have seen, from the counters the writers keep.
    virtual std::map<std::string, std::map<std::string, std::int64_t>> statusCounts() = 0;

    /// Newest first (by when they died), of `queue` only unless empty,
    /// those after `after` (the id of the last of the previous page; 0:
    /// from the newest).
    virtual std::vector<DeadLetter> deadLetters(const std::string& queue, int limit, std::int64_t after) = 0;
    virtual std::optional<DeadLetter> deadLetter(std::int64_t id) = 0;
    /// Puts the message back to work with a fresh count, its order or
    /// payment back to queued (docs/api.md): NotFound, or Conflict when its
    /// order or payment moved on meanwhile. `then` is told on the writer's
    /// thread once committed.
    virtual void replay(std::int64_t id, Done then) = 0;
    /// Replays every dead letter `filter` takes, those that conflict left
    /// out; with `dryRun` only counts them. `then` gets the counts.
    virtual void replayAll(const DeadLetterFilter& filter, bool dryRun,
                           std::function<void(Replayed, std::exception_ptr)> then) = 0;
};

}  // namespace orderpay
