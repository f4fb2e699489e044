#include "store/JsonText.h"

#include <Poco/JSON/Handler.h>
#include <Poco/JSON/JSONException.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/PrintHandler.h>

#include <limits>
#include <sstream>

namespace orderpay {
namespace {

/// Receives the parser's events for one of our shapes; anything else in
/// the text is refused with a JSONException.
class ShapeReader : public Poco::JSON::Handler {
public:
    void reset() override {}
    void startObject() override { refuse(); }
    void endObject() override { refuse(); }
    void startArray() override { refuse(); }
    void endArray() override { refuse(); }
    void key(const std::string&) override { refuse(); }
    void null() override { refuse(); }
    void value(int v) override { number(v); }
    void value(unsigned v) override { number(v); }
    void value(Poco::Int64 v) override { number(v); }
    void value(Poco::UInt64 v) override
    {
        if (v > static_cast<Poco::UInt64>(std::numeric_limits<Poco::Int64>::max())) refuse();
        number(static_cast<Poco::Int64>(v));
    }
    void value(const std::string&) override { refuse(); }
    void value(double) override { refuse(); }
    void value(bool) override { refuse(); }

protected:
    virtual void number(Poco::Int64) { refuse(); }
    [[noreturn]] static void refuse() { throw Poco::JSON::JSONException("unexpected JSON shape"); }
};

class StringMapReader : public ShapeReader {
public:
    std::map<std::string, std::string> map;

    void startObject() override
    {
        if (depth_++ != 0) refuse();
    }
    void endObject() override { --depth_; }
    void key(const std::string& k) override { key_ = k; }
    void value(const std::string& v) override
    {
        if (depth_ != 1) refuse();
        map.insert_or_assign(key_, v);  // a repeated key: the last one, as Poco's own objects do
    }

private:
    int depth_ = 0;
    std::string key_;
};

class ItemsReader : public ShapeReader {
public:
    std::vector<OrderItem> items;

    void startArray() override
    {
        if (depth_++ != 0) refuse();
    }
    void endArray() override { --depth_; }
    void startObject() override
    {
        if (depth_++ != 1) refuse();
        items.emplace_back();
        seen_ = 0;
    }
    void endObject() override
    {
        if (seen_ != kAll) refuse();  // an item lacks a field
        --depth_;
    }
    void key(const std::string& k) override { key_ = k; }
    void value(const std::string& v) override
    {
        if (depth_ != 2 || key_ != "sku") refuse();
        items.back().sku = v;
        seen_ |= kSku;
    }

protected:
    void number(Poco::Int64 v) override
    {
        if (depth_ != 2) refuse();
        if (key_ == "quantity") {
            items.back().quantity = v;
            seen_ |= kQuantity;
        } else if (key_ == "unit_amount") {
            items.back().unitAmount = v;
            seen_ |= kUnitAmount;
        } else {
            refuse();
        }
    }

private:
    static constexpr unsigned kSku = 1, kQuantity = 2, kUnitAmount = 4, kAll = 7;
    int depth_ = 0;
    unsigned seen_ = 0;
    std::string key_;
};

template <typename Reader>
Reader read(const std::string& text)
{
    auto* reader = new Reader;
    Poco::JSON::Parser parser{Poco::JSON::Handler::Ptr(reader)};  // owns it
    parser.parse(text);
    return std::move(*reader);
}

}  // namespace

std::string stringMapToJson(const std::map<std::string, std::string>& map)
{
    std::ostringstream text;
    Poco::JSON::PrintHandler out(text);
    out.startObject();
    for (const auto& [k, v] : map) {
        out.key(k);
        out.value(v);
    }
    out.endObject();
    return text.str();
}

std::map<std::string, std::string> stringMapFromJson(const std::string& text)
{
    return read<StringMapReader>(text).map;
}

std::string itemsToJson(const std::vector<OrderItem>& items)
{
    std::ostringstream text;
    Poco::JSON::PrintHandler out(text);
    out.startArray();
    for (const auto& item : items) {
        out.startObject();
        out.key("sku");
        out.value(item.sku);
        out.key("quantity");
        out.value(static_cast<Poco::Int64>(item.quantity));
        out.key("unit_amount");
        out.value(static_cast<Poco::Int64>(item.unitAmount));
        out.endObject();
    }
    out.endArray();
    return text.str();
}

std::vector<OrderItem> itemsFromJson(const std::string& text)
{
    return read<ItemsReader>(text).items;
}

}  // namespace orderpay
