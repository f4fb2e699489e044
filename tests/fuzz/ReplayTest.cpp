// Every build, g++ included, replays each fuzz target's seed corpus and its
// regressions (inputs that once crashed or broke a property) through the same
// function libFuzzer calls. No libFuzzer needed: a fixed bug stays fixed.
#include "Targets.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> filesIn(const fs::path& dir)
{
    std::vector<fs::path> files;
    if (!fs::is_directory(dir)) return files;
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.is_regular_file() && entry.path().filename() != "README") files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    return files;
}

std::string readAll(const fs::path& file)
{
    std::ifstream in(file, std::ios::binary);
    REQUIRE(in);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void replay(const std::string& kind, std::size_t atLeast)
{
    for (const auto& target : orderpay::fuzz::targets()) {
        const auto files = filesIn(fs::path(ORDERPAY_FUZZ_DIR) / kind / target.name);
        INFO(kind << "/" << target.name);
        CHECK(files.size() >= atLeast);
        for (const auto& file : files) {
            INFO(file.string());
            const std::string input = readAll(file);
            CHECK_NOTHROW(target.run(input));
        }
    }
}

}  // namespace

TEST_CASE("Each fuzz target passes on its seed corpus")
{
    // A handful of valid and invalid inputs per target; fewer means the
    // corpus folder went missing.
    replay("corpus", 5);
}

TEST_CASE("Each fuzz target passes on every input that once failed it")
{
    replay("regressions", 0);
}
