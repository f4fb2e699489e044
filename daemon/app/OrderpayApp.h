#pragma once

#include "settings/Settings.h"

#include <Poco/Util/ServerApplication.h>

#include <map>
#include <string>

namespace orderpay {

namespace http {
class Auth;
}

/// orderpayd: the command line, then the daemon's life: open the store,
/// start the broker, the workers and the HTTP server, wait for SIGTERM or
/// SIGINT, and stop everything in the reverse order.
class OrderpayApp : public Poco::Util::ServerApplication {
public:
    OrderpayApp();

protected:
    void defineOptions(Poco::Util::OptionSet& options) override;
    void handleOption(const std::string& name, const std::string& value) override;
    int main(const std::vector<std::string>& args) override;

private:
    int checkConfig();
    /// --copy-to-postgresql: the SQLite database into an empty PostgreSQL one.
    int copyToPostgresql();
    int serve(const Settings& settings);
    /// SIGHUP: re-read the logging level and the token file.
    void reload(http::Auth& auth);

    std::string configFile_ = "/etc/orderpay/orderpay.properties";
    bool configGiven_ = false;
    std::map<std::string, std::string> overrides_;
    bool checkOnly_ = false;
    bool copyToPostgresql_ = false;
    bool helpRequested_ = false;
    bool versionRequested_ = false;
    std::string usageError_;
};

}  // namespace orderpay
