# Writes OUTPUT, a C++ file whose statusPage() returns the bytes of INPUT
# (the status page) unchanged: the daemon hashes its script and style for
# the Content-Security-Policy, so not one byte may differ from the file.
# Usage: cmake -DINPUT=status.html -DOUTPUT=StatusPage.cpp -P embed.cmake
file(READ "${INPUT}" html HEX)
string(LENGTH "${html}" hexLength)
math(EXPR size "${hexLength} / 2")
# Two hex digits a byte -> "0x..," each; a byte array, not a string
# literal, so no character of the page needs escaping.
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${html}")
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by embed.cmake: do not edit.\n"
  "#include \"http/page/StatusPage.h\"\n\n"
  "namespace orderpay::http::page {\n"
  "namespace {\n"
  "const unsigned char kPage[] = {${bytes}};\n"
  "}  // namespace\n\n"
  "std::string_view statusPage() { return std::string_view(reinterpret_cast<const char*>(kPage), ${size}); }\n\n"
  "}  // namespace orderpay::http::page\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
