#include "Commands.h"

#include "Errors.h"

#include <Poco/URI.h>

#include <functional>
#include <map>
#include <ostream>

namespace orderpayctl {
namespace {

const std::map<std::string, std::function<int(const Args&, Context&)>>& commands()
{
    static const std::map<std::string, std::function<int(const Args&, Context&)>> table = {
        {"status", statusCommand},
        {"orders", ordersCommand},
        {"order", orderCommand},
        {"cancel", cancelCommand},
        {"dead-letters", deadLettersCommand},
        {"replay", replayCommand},
        {"webhooks", webhooksCommand},
    };
    return table;
}

} // namespace

bool isCommand(const std::string& name)
{
    return commands().count(name) != 0;
}

int runCommand(const std::string& name, const Args& args, Context& ctx)
{
    const auto it = commands().find(name);
    if (it == commands().end()) throw UsageError("unknown command '" + name + "'");
    return it->second(args, ctx);
}

void printJson(const ApiResponse& response, Context& ctx)
{
    ctx.api.json(response); // an error status or a body that is not JSON throws
    ctx.out << response.body;
    if (response.body.empty() || response.body.back() != '\n') ctx.out << "\n";
}

std::string encode(const std::string& value)
{
    std::string out;
    Poco::URI::encode(value, "/?#[]@!$&'()*+,;=%: ", out);
    return out;
}

} // namespace orderpayctl
