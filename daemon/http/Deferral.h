#pragma once

#include <Poco/Net/HTTPServerResponse.h>

#include <functional>

namespace orderpay::http {

/// An answer given after the handler returned. A handler whose write goes
/// through the Committer does not wait for the commit: it calls expect(),
/// hands the write over and returns; the writer's thread later calls
/// answer() with what to send, and the HTTP server sends it from the thread
/// that owns the connection. No thread waits for the commit meanwhile, so
/// one commit (one sync) can take a request from every connection, not only
/// from as many as there are threads.
class Deferral {
public:
    /// Writes the answer; may throw what a handler throws (it is answered
    /// with the same problem+json).
    using Answer = std::function<void(Poco::Net::HTTPServerResponse&)>;

    virtual ~Deferral() = default;
    /// Called by the handler, on the request's thread, before it hands the
    /// write over: answer() is then called exactly once. False when too many
    /// answers wait for their commit already (http.max_queued): the handler
    /// then answers 503 and writes nothing.
    virtual bool expect() = 0;
    /// Called once, from any thread (the writer's); must not block.
    virtual void answer(Answer answer) = 0;
};

}  // namespace orderpay::http
