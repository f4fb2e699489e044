#pragma once

#include "settings/Settings.h"

#include <Poco/Net/ServerSocket.h>

#include <cstdint>
#include <string>

namespace orderpay::http {

/// The listening socket, bound and listening from construction on: the
/// daemon binds it before it opens anything else, so a port in use stops
/// the start at once, with nothing to unwind. Connections that arrive
/// before the server runs wait in the kernel's backlog.
class Listener {
public:
    /// Throws std::runtime_error: "cannot listen on 127.0.0.1:1212: address already in use".
    explicit Listener(const HttpSettings& settings);

    Poco::Net::ServerSocket& socket() { return socket_; }
    std::uint16_t port() const { return port_; }
    /// host:port as configured, with the port bound (port 0 picks one).
    std::string address() const;

private:
    std::string host_;
    Poco::Net::ServerSocket socket_;
    std::uint16_t port_ = 0;
};

}  // namespace orderpay::http
