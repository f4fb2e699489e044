#pragma once

#include <Poco/File.h>
#include <Poco/Path.h>
#include <Poco/TemporaryFile.h>

#include <string>

namespace orderpay::test {

/// A fresh folder, removed with everything in it when the test ends.
class TempDir {
public:
    TempDir() : path_(Poco::TemporaryFile::tempName()) { Poco::File(path_).createDirectories(); }
    ~TempDir() { Poco::File(path_).remove(true); }
    std::string file(const std::string& name) const { return Poco::Path(path_, name).toString(); }

private:
    std::string path_;
};

}  // namespace orderpay::test
