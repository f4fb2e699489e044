// libFuzzer's entry point for one target (ORDERPAY_FUZZ_TARGET names its
// function in Targets.h). A violated property aborts, so libFuzzer keeps the
// input as a crash; so does any exception the code under test lets escape.
#include "Targets.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    try {
        orderpay::fuzz::ORDERPAY_FUZZ_TARGET(std::string_view(reinterpret_cast<const char*>(data), size));
    } catch (const orderpay::fuzz::Violation& v) {
        std::fprintf(stderr, "property violated: %s\n", v.what());
        std::abort();
    }
    return 0;
}
