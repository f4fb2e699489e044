#pragma once

#include "store/Committer.h"
#include "store/Database.h"

#include <Poco/File.h>
#include <Poco/Path.h>
#include <Poco/TemporaryFile.h>

#include <memory>
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

/// A real database in a temporary folder, with its single writer.
/// close() and open() again stand for a daemon stopping and starting.
struct TestDatabase {
    TempDir dir;
    StoreSettings settings;
    std::unique_ptr<Database> db;
    std::unique_ptr<Committer> committer;

    TestDatabase()
    {
        settings.sqlitePath = dir.file("test.db");
        open();
    }
    virtual ~TestDatabase() = default;

    virtual void open()
    {
        db = std::make_unique<Database>(settings);
        committer = std::make_unique<Committer>(*db, true, 64);
    }

    virtual void close()
    {
        committer.reset();
        db.reset();
    }
};

}  // namespace orderpay::test
