#include "store/JsonText.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <sstream>

namespace orderpay {

std::string stringMapToJson(const std::map<std::string, std::string>& map)
{
    Poco::JSON::Object o;
    for (const auto& [k, v] : map) o.set(k, v);
    std::ostringstream out;
    o.stringify(out);
    return out.str();
}

std::map<std::string, std::string> stringMapFromJson(const std::string& text)
{
    std::map<std::string, std::string> map;
    auto o = Poco::JSON::Parser().parse(text).extract<Poco::JSON::Object::Ptr>();
    for (const auto& [k, v] : *o) map.emplace(k, v.convert<std::string>());
    return map;
}

}  // namespace orderpay
