// orderpayctl: the operator's command line for orderpayd's HTTP API.
// Here only the wiring and the one place that turns errors into exit codes.
#include "ApiClient.h"
#include "Commands.h"
#include "Endpoint.h"
#include "Errors.h"
#include "Options.h"

#include <Poco/Exception.h>

#include <csignal>
#include <iostream>

#include <unistd.h>

using namespace orderpayctl;

namespace {

int run(int argc, const char* const argv[])
{
    const Invocation inv = parseCommandLine(argc, argv);
    if (inv.global.help) {
        std::cout << usageText();
        return kExitOk;
    }
    if (inv.global.version) {
        std::cout << "orderpayctl " ORDERPAY_VERSION "\n";
        return kExitOk;
    }
    // An unknown command is a usage error even when no daemon is reachable.
    if (!isCommand(inv.command)) throw UsageError("unknown command '" + inv.command + "'");
    const ApiClient api(Endpoint::resolve(inv.global));
    Context ctx{api, inv.global.json, std::cout, std::cerr, std::cin, ::isatty(STDIN_FILENO) == 1};
    const int code = runCommand(inv.command, inv.args, ctx);
    std::cout.flush();
    return code;
}

} // namespace

int main(int argc, char* argv[])
{
    // `orderpayctl orders | head` must not die of SIGPIPE mid-table.
    std::signal(SIGPIPE, SIG_IGN);
    try {
        return run(argc, argv);
    } catch (const UsageError& e) {
        std::cerr << "orderpayctl: " << e.what() << "\n";
        switch (e.show()) {
        case UsageError::Show::All: std::cerr << "\n" << usageText(); break;
        case UsageError::Show::Command: std::cerr << commandUsage(e.command()); break;
        case UsageError::Show::Nothing: break;
        }
        return kExitUsage;
    } catch (const ApiError& e) {
        std::cerr << "orderpayctl: " << e.what() << "\n";
        for (const auto& h : e.hints()) std::cerr << "orderpayctl: " << h << "\n";
        return kExitApiError;
    } catch (const Unreachable& e) {
        std::cerr << "orderpayctl: " << e.what() << "\n";
        return kExitUnreachable;
    } catch (const Poco::Exception& e) {
        // A bug or a surprise of the library: say what, never a bare abort.
        std::cerr << "orderpayctl: unexpected error: " << e.displayText() << "\n";
        return kExitApiError;
    } catch (const std::exception& e) {
        std::cerr << "orderpayctl: unexpected error: " << e.what() << "\n";
        return kExitApiError;
    }
}
