#include "Table.h"

#include <Poco/DateTime.h>
#include <Poco/DateTimeFormat.h>
#include <Poco/DateTimeParser.h>
#include <Poco/Exception.h>
#include <Poco/NumberFormatter.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

namespace orderpayctl {
namespace {

// Display width, counting each UTF-8 sequence as one column (customers'
// addresses may be non-ASCII).
std::size_t width(const std::string& s)
{
    std::size_t n = 0;
    for (unsigned char c : s)
        if ((c & 0xC0) != 0x80) ++n;
    return n;
}

} // namespace

Table::Table(std::vector<std::string> headers, std::vector<bool> numeric)
    : headers_(std::move(headers)), numeric_(std::move(numeric))
{
    numeric_.resize(headers_.size(), false);
}

void Table::add(std::vector<std::string> row)
{
    row.resize(headers_.size());
    rows_.push_back(std::move(row));
}

void Table::print(std::ostream& out) const
{
    std::vector<std::size_t> widths(headers_.size());
    for (std::size_t c = 0; c < headers_.size(); ++c) {
        widths[c] = width(headers_[c]);
        for (const auto& row : rows_) widths[c] = std::max(widths[c], width(row[c]));
    }
    auto line = [&](const std::vector<std::string>& cells) {
        std::string s;
        for (std::size_t c = 0; c < cells.size(); ++c) {
            const std::string pad(widths[c] - width(cells[c]), ' ');
            const bool last = c + 1 == cells.size();
            if (numeric_[c])
                s += pad + cells[c];
            else
                s += cells[c] + (last ? "" : pad);
            if (!last) s += "  ";
        }
        // Trailing blanks of an empty last cell serve no one.
        s.erase(s.find_last_not_of(' ') + 1);
        out << s << "\n";
    };
    line(headers_);
    for (const auto& row : rows_) line(row);
}

std::string text(const Poco::Dynamic::Var& v, const std::string& fallback)
{
    if (v.isEmpty()) return fallback;
    try {
        if (v.isString()) return v.extract<std::string>();
        if (v.type() == typeid(bool)) return v.extract<bool>() ? "true" : "false";
        return v.convert<std::string>();
    } catch (const Poco::Exception&) {
        return fallback;
    }
}

std::string text(const Poco::JSON::Object::Ptr& o, const std::string& key, const std::string& fallback)
{
    if (!o || !o->has(key) || o->isNull(key)) return fallback;
    return text(o->get(key), fallback);
}

std::string money(const Poco::Dynamic::Var& amount, const std::string& currency)
{
    long long minor = 0;
    try {
        minor = amount.convert<long long>();
    } catch (const Poco::Exception&) {
        return text(amount) + " " + currency;
    }
    // ISO 4217 exponents other than 2, among currencies likely to be seen.
    static const std::set<std::string> none = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW",
                                               "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"};
    static const std::set<std::string> three = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"};
    const int exponent = none.count(currency) ? 0 : three.count(currency) ? 3 : 2;
    if (exponent == 0) return std::to_string(minor) + " " + currency;
    const long long scale = exponent == 3 ? 1000 : 100;
    const long long whole = std::llabs(minor) / scale;
    const long long fraction = std::llabs(minor) % scale;
    std::string f = std::to_string(fraction);
    f.insert(0, static_cast<std::size_t>(exponent) - f.size(), '0');
    return (minor < 0 ? "-" : "") + std::to_string(whole) + "." + f + " " + currency;
}

std::optional<long long> parseTimestamp(const std::string& text)
{
    try {
        int tzd = 0;
        Poco::DateTime dt;
        Poco::DateTimeParser::parse(Poco::DateTimeFormat::ISO8601_FRAC_FORMAT, text, dt, tzd);
        dt.makeUTC(tzd);
        return static_cast<long long>(dt.timestamp().epochMicroseconds());
    } catch (const Poco::Exception&) {
        return std::nullopt;
    }
}

std::string stepDuration(long long micros)
{
    const char* sign = micros < 0 ? "-" : "+";
    const long long us = std::llabs(micros);
    const long long ms = (us + 500) / 1000;
    char buf[64];
    if (ms < 60'000) {
        std::snprintf(buf, sizeof buf, "%s%lld.%03llds", sign, ms / 1000, ms % 1000);
    } else if (ms < 3'600'000) {
        std::snprintf(buf, sizeof buf, "%s%lldm%02lld.%03llds", sign, ms / 60'000, ms / 1000 % 60, ms % 1000);
    } else {
        std::snprintf(buf, sizeof buf, "%s%lldh%02lldm%02llds", sign, ms / 3'600'000, ms / 60'000 % 60, ms / 1000 % 60);
    }
    return buf;
}

std::string roughDuration(double seconds)
{
    const long long s = static_cast<long long>(std::max(0.0, seconds));
    if (s < 60) return std::to_string(s) + "s";
    if (s < 3600) return std::to_string(s / 60) + "m " + std::to_string(s % 60) + "s";
    if (s < 86400) return std::to_string(s / 3600) + "h " + std::to_string(s / 60 % 60) + "m";
    return std::to_string(s / 86400) + "d " + std::to_string(s / 3600 % 24) + "h";
}

} // namespace orderpayctl
