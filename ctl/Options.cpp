#include "Options.h"

#include "Errors.h"

#include <Poco/NumberParser.h>

#include <iterator>

namespace orderpayctl {
namespace {

bool startsWith(const std::string& s, const std::string& prefix)
{
    return s.rfind(prefix, 0) == 0;
}

// `--name value` or `--name=value`; advances `i` past what it used.
std::optional<std::string> optionValue(const std::string& name, const std::vector<std::string>& args, std::size_t& i)
{
    const std::string& arg = args[i];
    if (arg == name) {
        if (i + 1 >= args.size()) throw UsageError(name + " needs a value");
        return args[++i];
    }
    if (startsWith(arg, name + "=")) return arg.substr(name.size() + 1);
    return std::nullopt;
}

const std::set<std::string> kGlobalOptions = {"--url", "--token-file", "--config", "--json"};

} // namespace

std::string commandUsage(const std::string& command)
{
    static const std::map<std::string, std::string> synopsis = {
        {"status", "orderpayctl [GLOBAL OPTIONS] status"},
        {"orders", "orderpayctl [GLOBAL OPTIONS] orders [--status S] [--limit N]"},
        {"order", "orderpayctl [GLOBAL OPTIONS] order ID"},
        {"cancel", "orderpayctl [GLOBAL OPTIONS] cancel ID"},
        {"dead-letters", "orderpayctl [GLOBAL OPTIONS] dead-letters [--queue Q] [--limit N]"},
        {"replay",
         "orderpayctl [GLOBAL OPTIONS] replay ID\n"
         "       orderpayctl [GLOBAL OPTIONS] replay --all [--queue Q] [--reason-contains TEXT] [--dry-run] [--yes]"},
        {"webhooks", "orderpayctl [GLOBAL OPTIONS] webhooks list | add URL [--events E,...] | remove ID | rotate ID |\n"
                     "       test ID | deliveries ID [--limit N]"},
    };
    const auto it = synopsis.find(command);
    return (it == synopsis.end() ? std::string() : "Usage: " + it->second + "\n") +
           "Run 'orderpayctl --help' for every command and option.\n";
}

std::string usageText()
{
    return "Usage: orderpayctl [--url URL] [--token-file FILE] [--config FILE] [--json] COMMAND [ARGS]\n"
           "       orderpayctl --help | --version\n"
           "\n"
           "Commands:\n"
           "  status                              health, queues, orders by status, rates\n"
           "  orders [--status S] [--limit N]     newest orders first (N: 1-200, default 50)\n"
           "  order ID                            one order, its payments and its timeline\n"
           "  cancel ID                           cancel a queued or awaiting_payment order\n"
           "  dead-letters [--queue Q] [--limit N]\n"
           "                                      messages given up on, newest first\n"
           "  replay ID                           put one dead letter back on its queue\n"
           "  replay --all [--queue Q] [--reason-contains TEXT] [--dry-run] [--yes]\n"
           "                                      replay (or only count) every match\n"
           "  webhooks list                       the webhook endpoints\n"
           "  webhooks add URL [--events E,...]   register one (its secret is shown once)\n"
           "  webhooks remove ID | rotate ID | test ID\n"
           "                                      remove one, give it a new secret, send it a test event\n"
           "  webhooks deliveries ID [--limit N]  its delivery attempts, newest first (N: 1-100, default 20)\n"
           "\n"
           "Global options (before the command):\n"
           "  --url URL          the daemon, e.g. http://127.0.0.1:1212 (default: http.host and\n"
           "                     http.port of the configuration)\n"
           "  --token-file FILE  send the first token of FILE (default: http.auth.admin_token_file,\n"
           "                     else http.auth.token_file, of the configuration)\n"
           "  --config FILE      the daemon's configuration (default " +
           std::string(kDefaultConfig) +
           ")\n"
           "  --json             print the API's JSON answer instead of a table\n"
           "\n"
           "Statuses: queued processing awaiting_payment paid failed cancelled\n"
           "Queues:   orders order-steps payments webhooks\n"
           "Events:   order.processing order.awaiting_payment order.paid order.failed order.cancelled\n"
           "          payment.succeeded payment.rejected\n"
           "Exit status: 0 done, 1 the API answered an error, 2 usage, 3 daemon unreachable.\n";
}

Invocation parseCommandLine(int argc, const char* const argv[])
{
    std::vector<std::string> args(argv + 1, argv + argc);
    Invocation inv;
    std::size_t i = 0;
    for (; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (arg == "--help" || arg == "-h") {
            inv.global.help = true;
        } else if (arg == "--version" || arg == "-V") {
            inv.global.version = true;
        } else if (arg == "--json") {
            inv.global.json = true;
        } else if (auto v = optionValue("--url", args, i)) {
            inv.global.url = *v;
        } else if (auto v = optionValue("--token-file", args, i)) {
            inv.global.tokenFile = *v;
        } else if (auto v = optionValue("--config", args, i)) {
            inv.global.config = *v;
        } else if (startsWith(arg, "-")) {
            throw UsageError("unknown option " + arg);
        } else {
            break;
        }
    }
    if (i < args.size()) {
        inv.command = args[i];
        inv.args.assign(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
    }
    if (inv.command.empty() && !inv.global.help && !inv.global.version) throw UsageError("no command given");
    return inv;
}

CommandArgs::CommandArgs(std::string command, const std::vector<std::string>& args,
                         const std::set<std::string>& valueOptions, const std::set<std::string>& flags)
    : command_(std::move(command))
{
    bool optionsEnded = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (optionsEnded || arg == "-" || !startsWith(arg, "-")) {
            positionals_.push_back(arg);
            continue;
        }
        if (arg == "--") {
            optionsEnded = true;
            continue;
        }
        if (flags.count(arg)) {
            flags_.insert(arg);
            continue;
        }
        bool matched = false;
        for (const auto& name : valueOptions) {
            std::optional<std::string> v;
            try {
                v = optionValue(name, args, i);
            } catch (const UsageError& e) {
                fail(e.what());
            }
            if (v) {
                values_.emplace(name, *v);
                matched = true;
                break;
            }
        }
        if (matched) continue;
        const std::string bare = arg.substr(0, arg.find('='));
        if (kGlobalOptions.count(bare))
            fail(bare + " is a global option: put it before the command (orderpayctl " + bare + " ... " + command_ +
                 ")");
        fail("unknown option " + arg + " for '" + command_ + "'");
    }
}

void CommandArgs::fail(const std::string& message) const
{
    throw UsageError(message, UsageError::Show::Command, command_);
}

std::optional<std::string> CommandArgs::value(const std::string& name) const
{
    // The last one wins, as with most tools.
    auto [first, last] = values_.equal_range(name);
    if (first == last) return std::nullopt;
    return std::prev(last)->second;
}

std::vector<std::string> CommandArgs::values(const std::string& name) const
{
    std::vector<std::string> out;
    auto [first, last] = values_.equal_range(name);
    for (auto it = first; it != last; ++it) out.push_back(it->second);
    return out;
}

std::string CommandArgs::require(std::size_t index, const std::string& what) const
{
    if (index >= positionals_.size()) fail("'" + command_ + "' needs " + what);
    return positionals_[index];
}

void CommandArgs::atMost(std::size_t n) const
{
    if (positionals_.size() > n) fail("unexpected argument '" + positionals_[n] + "' for '" + command_ + "'");
}

std::optional<int> CommandArgs::limit(int max) const
{
    const auto v = value("--limit");
    if (!v) return std::nullopt;
    int n = 0;
    if (!Poco::NumberParser::tryParse(*v, n) || n < 1 || n > max)
        fail("--limit must be a whole number from 1 to " + std::to_string(max) + ", not '" + *v + "'");
    return n;
}

} // namespace orderpayctl
