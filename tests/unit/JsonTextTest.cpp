// The JSON texts the store keeps in single columns: what goes in comes back,
// and a text of another shape is refused (Poco::Exception), never half read.
#include "store/JsonText.h"

#include <Poco/Exception.h>

#include <catch2/catch.hpp>

using namespace orderpay;

TEST_CASE("items survive the way through JSON text, strings of any content included", "[json]")
{
    const std::vector<OrderItem> items{
        {"BOOK-42", 2, 1250},
        {"a\"b\\c/\n\t\x01 \xC3\xA9 \xF0\x9F\x98\x80", 10000, 1000000000},
        {"Z", 1, 0},
    };
    const std::string text = itemsToJson(items);
    CHECK(text.find(R"({"sku":"BOOK-42","quantity":2,"unit_amount":1250})") == 1);
    const auto back = itemsFromJson(text);
    REQUIRE(back.size() == items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
        CHECK(back[i].sku == items[i].sku);
        CHECK(back[i].quantity == items[i].quantity);
        CHECK(back[i].unitAmount == items[i].unitAmount);
    }
    CHECK(itemsFromJson(itemsToJson({})).empty());
    // The order of the fields is not part of the shape.
    const auto reordered = itemsFromJson(R"([{"unit_amount":5,"sku":"X","quantity":3}])");
    REQUIRE(reordered.size() == 1);
    CHECK(reordered[0].sku == "X");
    CHECK(reordered[0].quantity == 3);
    CHECK(reordered[0].unitAmount == 5);
}

TEST_CASE("a text that is not an array of whole items is refused", "[json]")
{
    for (const char* text : {
             "",
             "{}",
             R"("sku")",
             R"([{"sku":"A","quantity":1}])",                             // unit_amount missing
             R"([{"sku":"A","quantity":1,"unit_amount":2,"extra":3}])",  // a field of no item
             R"([{"sku":1,"quantity":1,"unit_amount":2}])",
             R"([{"sku":"A","quantity":"1","unit_amount":2}])",
             R"([{"sku":"A","quantity":1.5,"unit_amount":2}])",
             R"([{"sku":"A","quantity":null,"unit_amount":2}])",
             R"([{"sku":"A","quantity":18446744073709551615,"unit_amount":2}])",
             R"([[{"sku":"A","quantity":1,"unit_amount":2}]])",
             R"([{"sku":"A","quantity":1,"unit_amount":{"n":2}}])",
             R"([{"sku":"A","quantity":1,"unit_amount":2})",
         }) {
        INFO(text);
        CHECK_THROWS_AS(itemsFromJson(text), Poco::Exception);
    }
}

TEST_CASE("a flat map of strings survives the way through JSON text", "[json]")
{
    const std::map<std::string, std::string> map{
        {"channel", "web"}, {"", "empty key"}, {"k\"\\", "v\u2028\x1F"}, {"\xC3\xA9", ""}};
    CHECK(stringMapFromJson(stringMapToJson(map)) == map);
    CHECK(stringMapToJson({}) == "{}");
    CHECK(stringMapFromJson("{}").empty());
    CHECK(stringMapFromJson(R"({"a":"1","b":"2"})") == std::map<std::string, std::string>{{"a", "1"}, {"b", "2"}});
}

TEST_CASE("a text that is not a flat object of strings is refused", "[json]")
{
    for (const char* text : {"", "[]", R"("a")", "1", R"({"a":1})", R"({"a":null})", R"({"a":true})",
                             R"({"a":{"b":"c"}})", R"({"a":["b"]})", R"({"a":"b")"}) {
        INFO(text);
        CHECK_THROWS_AS(stringMapFromJson(text), Poco::Exception);
    }
}
