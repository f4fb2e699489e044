# Writes OUTPUT, a C++ file whose FUNCTION() returns the bytes of INPUT
# unchanged: the status page by default (the daemon hashes its script and
# style for the Content-Security-Policy, so not one byte may differ from the
# file), or any other file compiled in as it is (the OpenAPI description).
# Usage: cmake -DINPUT=status.html -DOUTPUT=StatusPage.cpp -P embed.cmake
#        cmake -DINPUT=openapi.json -DOUTPUT=OpenApi.cpp -DHEADER=http/OpenApi.h
#              -DNAMESPACE=orderpay::http -DFUNCTION=openApiDocument -P embed.cmake
if(NOT DEFINED HEADER)
  set(HEADER "http/page/StatusPage.h")
endif()
if(NOT DEFINED NAMESPACE)
  set(NAMESPACE "orderpay::http::page")
endif()
if(NOT DEFINED FUNCTION)
  set(FUNCTION "statusPage")
endif()
file(READ "${INPUT}" content HEX)
string(LENGTH "${content}" hexLength)
math(EXPR size "${hexLength} / 2")
# Two hex digits a byte -> "0x..," each; a byte array, not a string
# literal, so no character of the file needs escaping.
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${content}")
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by embed.cmake: do not edit.\n"
  "#include \"${HEADER}\"\n\n"
  "namespace ${NAMESPACE} {\n"
  "namespace {\n"
  "const unsigned char kContent[] = {${bytes}};\n"
  "}  // namespace\n\n"
  "std::string_view ${FUNCTION}() { return std::string_view(reinterpret_cast<const char*>(kContent), ${size}); }\n\n"
  "}  // namespace ${NAMESPACE}\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
