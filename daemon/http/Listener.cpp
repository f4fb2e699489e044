#include "http/Listener.h"

#include <Poco/Net/NetException.h>
#include <Poco/Net/SocketAddress.h>

#include <cctype>
#include <cstring>
#include <stdexcept>

namespace orderpay::http {

Listener::Listener(const HttpSettings& settings) : host_(settings.host)
{
    const std::string where = settings.host + ":" + std::to_string(settings.port);
    try {
        // SO_REUSEADDR (a restart need not wait out TIME_WAIT), never
        // SO_REUSEPORT, which Poco's two-argument bind also sets: with it a
        // second daemon on the same port would share it instead of failing.
        socket_.bind(Poco::Net::SocketAddress(settings.host, settings.port), true, false);
        socket_.listen(1024);
    } catch (const Poco::Exception& e) {
        // Poco's text repeats the address; the system's own words are clearer.
        std::string why = e.code() > 0 ? std::strerror(e.code()) : e.message();
        if (!why.empty()) why[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(why[0])));
        throw std::runtime_error("cannot listen on " + where + ": " + why);
    }
    port_ = socket_.address().port();
}

std::string Listener::address() const { return host_ + ":" + std::to_string(port_); }

}  // namespace orderpay::http
