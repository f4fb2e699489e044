#include "app/OrderpayApp.h"

#include <iostream>

int main(int argc, char** argv)
{
    try {
        orderpay::OrderpayApp app;
        return app.run(argc, argv);
    } catch (const Poco::Exception& e) {
        // Unknown or malformed command-line options land here.
        std::cerr << "orderpayd: " << e.displayText() << " (see --help)" << std::endl;
        return Poco::Util::Application::EXIT_USAGE;
    } catch (const std::exception& e) {
        std::cerr << "orderpayd: " << e.what() << std::endl;
        return Poco::Util::Application::EXIT_SOFTWARE;
    }
}
