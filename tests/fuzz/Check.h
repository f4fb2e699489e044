#pragma once

#include "Targets.h"

#include "http/Problem.h"

#include <Poco/Dynamic/Var.h>

#include <string>

namespace orderpay::fuzz {

inline void check(bool holds, const std::string& what)
{
    if (!holds) throw Violation(what);
}

/// The problem+json body a client gets for `problem` is valid UTF-8, parses
/// as a JSON object and says what the problem says (every string that was
/// valid UTF-8 comes back unchanged).
void checkProblem(const http::Problem& problem);

/// `text` parses (with the HTTP layer's parser) to a JSON object; throws
/// Violation otherwise.
Poco::Dynamic::Var parseOurJson(const std::string& text, const std::string& what);

}  // namespace orderpay::fuzz
