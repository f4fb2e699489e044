#include "Check.h"

#include "domain/Validation.h"
#include "http/Json.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>

namespace orderpay::fuzz {

const std::vector<Target>& targets()
{
    static const std::vector<Target> all = {
        {"request_json", requestJson},
        {"routing", routing},
        {"queue_message", queueMessage},
    };
    return all;
}

Poco::Dynamic::Var parseOurJson(const std::string& text, const std::string& what)
{
    try {
        return http::parseJson(text);
    } catch (const http::ProblemException& e) {
        throw Violation(what + " is not JSON our own parser reads back (" + e.problem.detail + "): " + text);
    }
}

namespace {

void sameIfValid(const std::string& sent, const Poco::JSON::Object& o, const std::string& key, const std::string& what)
{
    check(o.has(key) && o.get(key).isString(), what + ": no string \"" + key + "\"");
    if (isValidUtf8(sent)) {
        check(o.getValue<std::string>(key) == sent, what + ": \"" + key + "\" came back changed: " + sent);
    }
}

}  // namespace

void checkProblem(const http::Problem& problem)
{
    const std::string body = http::problemBody(problem);
    check(isValidUtf8(body), "the problem body is not valid UTF-8: " + body);
    const auto parsed = parseOurJson(body, "the problem body");
    check(parsed.type() == typeid(Poco::JSON::Object::Ptr), "the problem body is not a JSON object: " + body);
    const auto& o = *parsed.extract<Poco::JSON::Object::Ptr>();
    check(o.has("status") && o.get("status").isInteger() && o.getValue<int>("status") == problem.status,
          "the problem body has the wrong status: " + body);
    check(problem.status >= 400 && problem.status <= 599, "a problem that is not an error: " + body);
    sameIfValid(problem.type, o, "type", "problem");
    sameIfValid(problem.title, o, "title", "problem");
    sameIfValid(problem.detail, o, "detail", "problem");
    if (problem.errors.empty()) {
        check(!o.has("errors"), "an errors member without errors: " + body);
        return;
    }
    const auto errors = o.getArray("errors");
    check(errors && errors->size() == problem.errors.size(), "the problem body lists other errors: " + body);
    for (std::size_t i = 0; i < problem.errors.size(); ++i) {
        const auto e = errors->getObject(static_cast<unsigned>(i));
        check(static_cast<bool>(e), "an error that is not an object: " + body);
        sameIfValid(problem.errors[i].field, *e, "field", "problem error");
        sameIfValid(problem.errors[i].message, *e, "message", "problem error");
    }
}

}  // namespace orderpay::fuzz
