// Text for people: aligned tables and the few value formats the commands
// share (money, durations, JSON values as plain text).
#pragma once

#include <Poco/Dynamic/Var.h>
#include <Poco/JSON/Object.h>

#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace orderpayctl {

// Columns padded to their widest cell, two spaces apart; columns marked
// numeric are right-aligned. The last column is never padded, so a long
// reason at the end of a row does not widen the others.
class Table {
public:
    explicit Table(std::vector<std::string> headers, std::vector<bool> numeric = {});
    void add(std::vector<std::string> row);
    bool empty() const { return rows_.empty(); }
    void print(std::ostream& out) const;

private:
    std::vector<std::string> headers_;
    std::vector<bool> numeric_;
    std::vector<std::vector<std::string>> rows_;
};

// A JSON member as text: strings as they are, numbers and booleans printed,
// null or missing as `fallback`.
std::string text(const Poco::JSON::Object::Ptr& o, const std::string& key, const std::string& fallback = "-");
std::string text(const Poco::Dynamic::Var& v, const std::string& fallback = "-");

// 2500 EUR -> "25.00 EUR" (minor units; JPY and a few others have none, the
// dinars three).
std::string money(const Poco::Dynamic::Var& amount, const std::string& currency);

// An RFC 3339 timestamp of the API as microseconds since the epoch.
std::optional<long long> parseTimestamp(const std::string& text);
// A duration in microseconds: "+0.012s", "+1.998s", "+2m03.100s", "+1h02m03s".
std::string stepDuration(long long micros);
// Seconds as "1h 25m", "3m 12s", "42s"; for uptimes.
std::string roughDuration(double seconds);

} // namespace orderpayctl
