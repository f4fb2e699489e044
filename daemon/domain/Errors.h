#pragma once

#include <stdexcept>
#include <string>

namespace orderpay {

/// The split the retry and ack decisions need: a transient error may
/// succeed if tried again later (the database was full, the broker was
/// away); a permanent one never will (the message cannot be decoded).
class TransientError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class PermanentError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// The database cannot take writes now (disk full, read-only, I/O error).
/// Nothing of the failed transaction was stored.
class StoreUnavailable : public TransientError {
public:
    using TransientError::TransientError;
};

/// Request-level outcomes the HTTP layer maps to statuses.
class NotFound : public PermanentError {
public:
    using PermanentError::PermanentError;
};

class Conflict : public PermanentError {
public:
    using PermanentError::PermanentError;
};

class IdempotencyMismatch : public PermanentError {
public:
    using PermanentError::PermanentError;
};

/// A queue message that can never be handled (undecodable body, unknown
/// target): it goes straight to the dead letters.
class PoisonMessage : public PermanentError {
public:
    using PermanentError::PermanentError;
};

}  // namespace orderpay
