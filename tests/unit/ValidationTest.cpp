#include "domain/Validation.h"

#include <Poco/JSON/Parser.h>

#include <catch2/catch.hpp>

using namespace orderpay;

namespace {

Poco::Dynamic::Var json(const std::string& text) { return Poco::JSON::Parser().parse(text); }

std::vector<std::string> fieldsOf(const std::vector<FieldError>& errors)
{
    std::vector<std::string> fields;
    for (const auto& e : errors) fields.push_back(e.field);
    return fields;
}

Validated<NewOrder> order(const std::string& text) { return validateOrder(json(text), "EUR"); }

std::string items(int n)
{
    std::string s = "[";
    for (int i = 0; i < n; ++i) s += std::string(i ? "," : "") + R"({"sku":"A","quantity":1,"unit_amount":1})";
    return s + "]";
}

}  // namespace

TEST_CASE("a valid order is accepted and totalled", "[validation]")
{
    auto v = order(R"({"customer":"alice@example.com","items":[{"sku":"BOOK-42","quantity":2,"unit_amount":1250},
                      {"sku":"pen.blue_1","quantity":3,"unit_amount":0}],"metadata":{"channel":"web"}})");
    REQUIRE(v.errors.empty());
    CHECK(v.value->totalAmount == 2500);
    CHECK(v.value->currency == "EUR");  // the configured default
    CHECK(v.value->metadata.at("channel") == "web");
    CHECK(v.value->items.size() == 2);
}

TEST_CASE("order field rules", "[validation]")
{
    using Catch::Matchers::VectorContains;
    CHECK_THAT(fieldsOf(order(R"({"items":[{"sku":"A","quantity":1,"unit_amount":1}]})").errors),
               VectorContains(std::string("customer")));
    CHECK_THAT(fieldsOf(order(R"({"customer":"","items":)" + items(1) + "}").errors),
               VectorContains(std::string("customer")));
    CHECK_THAT(fieldsOf(order(R"({"customer":")" + std::string(201, 'x') + R"(","items":)" + items(1) + "}").errors),
               VectorContains(std::string("customer")));
    // 200 characters, counted as code points not bytes.
    std::string twoHundredUmlauts;
    for (int i = 0; i < 200; ++i) twoHundredUmlauts += "\xc3\xbc";
    CHECK(order(R"({"customer":")" + twoHundredUmlauts + R"(","items":)" + items(1) + "}").errors.empty());

    CHECK_THAT(fieldsOf(order(R"({"customer":"a","currency":"eur","items":)" + items(1) + "}").errors),
               VectorContains(std::string("currency")));
    CHECK_THAT(fieldsOf(order(R"({"customer":"a","items":[]})").errors), VectorContains(std::string("items")));
    CHECK(order(R"({"customer":"a","items":)" + items(100) + "}").errors.empty());
    CHECK_THAT(fieldsOf(order(R"({"customer":"a","items":)" + items(101) + "}").errors),
               VectorContains(std::string("items")));
    CHECK_THAT(fieldsOf(order(R"({"customer":"a","items":[{"sku":"a b","quantity":1,"unit_amount":1}]})").errors),
               VectorContains(std::string("items[0].sku")));
    CHECK_THAT(fieldsOf(order(R"({"customer":"a","items":[{"sku":")" + std::string(65, 'a') +
                              R"(","quantity":1,"unit_amount":1}]})")
                            .errors),
               VectorContains(std::string("items[0].sku")));
    for (const char* q : {"0", "10001", "1.5", "\"2\"", "true", "null", "-1"}) {
        INFO("quantity " << q);
        CHECK_THAT(fieldsOf(order(std::string(R"({"customer":"a","items":[{"sku":"A","quantity":)") + q +
                                  R"(,"unit_amount":1}]})")
                                .errors),
                   VectorContains(std::string("items[0].quantity")));
    }
    for (const char* u : {"-1", "1000000001", "18446744073709551615", "2.0"}) {
        INFO("unit_amount " << u);
        CHECK_THAT(fieldsOf(order(std::string(R"({"customer":"a","items":[{"sku":"A","quantity":1,"unit_amount":)") +
                                  u + "}]}")
                                .errors),
                   VectorContains(std::string("items[0].unit_amount")));
    }
    CHECK_THAT(fieldsOf(order(R"({"customer":"a","items":[{"sku":"A","quantity":1,"unit_amount":1}],"note":"x"})")
                            .errors),
               VectorContains(std::string("note")));
    CHECK_THAT(fieldsOf(order(R"({"customer":"a","items":)" + items(1) + R"(,"metadata":{"n":1}})").errors),
               VectorContains(std::string("metadata.n")));
    std::string many = "{";
    for (int i = 0; i < 21; ++i) many += std::string(i ? "," : "") + "\"k" + std::to_string(i) + "\":\"v\"";
    many += "}";
    CHECK_THAT(fieldsOf(order(R"({"customer":"a","items":)" + items(1) + R"(,"metadata":)" + many + "}").errors),
               VectorContains(std::string("metadata")));
    CHECK_THAT(fieldsOf(validateOrder(json("[1]"), "EUR").errors), VectorContains(std::string("")));
}

TEST_CASE("the order total may not exceed 10^12", "[validation][money]")
{
    // 10000 x 10^8 = 10^12 exactly: allowed.
    CHECK(order(R"({"customer":"a","items":[{"sku":"A","quantity":10000,"unit_amount":100000000}]})").errors.empty());
    auto over = order(R"({"customer":"a","items":[{"sku":"A","quantity":10000,"unit_amount":100000000},
                                                 {"sku":"B","quantity":1,"unit_amount":1}]})");
    REQUIRE(over.errors.size() == 1);
    CHECK(over.errors[0].field == "items");
}

TEST_CASE("payment field rules", "[validation]")
{
    using Catch::Matchers::VectorContains;
    auto ok = validatePayment(json(R"({"order_id":"ord_x","amount":2500,"currency":"EUR","method":"card",
                                       "reference":"psp-1"})"));
    REQUIRE(ok.errors.empty());
    CHECK(ok.value->amount == 2500);
    auto bad = validatePayment(json(R"({"order_id":5,"amount":-1,"currency":"E","method":"cheque","reference":"",
                                        "extra":1})"));
    CHECK_THAT(fieldsOf(bad.errors), VectorContains(std::string("order_id")));
    CHECK_THAT(fieldsOf(bad.errors), VectorContains(std::string("amount")));
    CHECK_THAT(fieldsOf(bad.errors), VectorContains(std::string("currency")));
    CHECK_THAT(fieldsOf(bad.errors), VectorContains(std::string("method")));
    CHECK_THAT(fieldsOf(bad.errors), VectorContains(std::string("reference")));
    CHECK_THAT(fieldsOf(bad.errors), VectorContains(std::string("extra")));
}

TEST_CASE("UTF-8 and header checks", "[validation]")
{
    CHECK(isValidUtf8("plain ascii"));
    CHECK(isValidUtf8("\xc3\xbc\xe2\x82\xac\xf0\x9f\x92\xb6"));
    CHECK(utf8ErrorOffset("ab\xff") == 2);
    CHECK(utf8ErrorOffset("\xc0\xaf") == 0);          // overlong
    CHECK(utf8ErrorOffset("x\xed\xa0\x80") == 1);     // surrogate
    CHECK(utf8ErrorOffset("\xf4\x90\x80\x80") == 0);  // past U+10FFFF
    CHECK(utf8ErrorOffset("abc\xe2\x82") == 3);       // truncated
    CHECK(isIdempotencyKey("order-2026-11-26-0001"));
    CHECK_FALSE(isIdempotencyKey(""));
    CHECK_FALSE(isIdempotencyKey(std::string(256, 'k')));
    CHECK_FALSE(isIdempotencyKey("tab\there"));
}

TEST_CASE("text echoed to a client is made valid UTF-8", "[validation]")
{
    CHECK(toValidUtf8("plain \xc3\xbc") == "plain \xc3\xbc");
    CHECK(toValidUtf8("/\xff\xfe") == "/\xEF\xBF\xBD\xEF\xBF\xBD");
    CHECK(toValidUtf8("abc\xe2\x82") == "abc\xEF\xBF\xBD\xEF\xBF\xBD");  // each byte of a cut character
    CHECK(toValidUtf8("x\xed\xa0\x80y") == "x\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDy");
    CHECK(toValidUtf8(std::string("a\0b", 3)) == std::string("a\0b", 3));
    CHECK(isValidUtf8(toValidUtf8("\xc3\x28\xf0\x9f\x92")));
}
