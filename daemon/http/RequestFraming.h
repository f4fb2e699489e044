#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace orderpay::http {

/// A request head larger than this is not waited for: Poco refuses it.
inline constexpr std::size_t kMaxRequestHead = 64 * 1024;

/// Where the first request among a connection's received bytes ends, so the
/// server hands a request to Poco's parser only once it is there whole (and
/// idle or slow clients never hold a thread). Only the head is parsed, by
/// Poco; of the body only its length is found (Content-Length, or the chunk
/// sizes of a chunked body).
struct Framing {
    enum class Kind {
        Incomplete,  // wait for more bytes
        Whole,       // the request is `end` bytes long
        Unbounded,   // answer it with what is there (a head Poco refuses, a body
                     // over the limit): the connection closes after the answer
        Ambiguous,   // its end cannot be told for sure (RFC 9112 section 6.3: two
                     // Content-Length values, Transfer-Encoding other than chunked
                     // or beside Content-Length): 400 and close, as a proxy in
                     // front may read it otherwise
        TooLarge,    // a chunk size takes the body past the limit: 413 and close
    };
    Kind kind = Kind::Incomplete;
    std::size_t end = 0;
    /// Incomplete: the head is whole and asks for "100 Continue" before the body.
    bool expectContinue = false;
    /// Ambiguous: what makes it so, for the answer's detail.
    std::string why = {};
};

/// `received`: the bytes a connection sent that no request has taken yet.
/// `maxBody`: http.max_body_bytes; a body known to be larger is not waited for.
Framing frameRequest(std::string_view received, std::size_t maxBody);

/// How many bytes of a connection's requests the server holds at most before
/// one of them is whole (a head, a body of `maxBody` and chunked encoding's
/// overhead).
std::size_t receiveLimit(std::size_t maxBody);

}  // namespace orderpay::http
