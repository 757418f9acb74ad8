#include "shmutils/shm/error.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

namespace shmutils {
namespace {

TEST(ErrorTest, EveryErrnoOfTheSeedMapsToItsKind) {
  EXPECT_EQ(kind_from_errno(ENOENT), ErrorKind::NotFound);
  EXPECT_EQ(kind_from_errno(EEXIST), ErrorKind::AlreadyExists);
  EXPECT_EQ(kind_from_errno(EACCES), ErrorKind::PermissionDenied);
  EXPECT_EQ(kind_from_errno(EPERM), ErrorKind::PermissionDenied);
  EXPECT_EQ(kind_from_errno(ENAMETOOLONG), ErrorKind::NameTooLong);
  EXPECT_EQ(kind_from_errno(EINVAL), ErrorKind::InvalidArgument);
  EXPECT_EQ(kind_from_errno(ENOMEM), ErrorKind::OutOfMemory);
  EXPECT_EQ(kind_from_errno(EBADF), ErrorKind::BadDescriptor);
  EXPECT_EQ(kind_from_errno(ENOTSUP), ErrorKind::NotSupported);
  EXPECT_EQ(kind_from_errno(EOVERFLOW), ErrorKind::OutOfRange);
  EXPECT_EQ(kind_from_errno(ENXIO), ErrorKind::NotSupported);
  EXPECT_EQ(kind_from_errno(ENODEV), ErrorKind::NotSupported);
  EXPECT_EQ(kind_from_errno(ENOSPC), ErrorKind::NoSpace);
  EXPECT_EQ(kind_from_errno(ESRCH), ErrorKind::ProcessGone);
  EXPECT_EQ(kind_from_errno(ETIMEDOUT), ErrorKind::Timeout);
  EXPECT_EQ(kind_from_errno(EXDEV), ErrorKind::System);
}

TEST(ErrorTest, MessageNamesObjectOperationKindAndErrnoText) {
  Error e(ErrorKind::NotFound, "segment \"/orders\"", "open", "", ENOENT);
  EXPECT_EQ(std::string(e.what()),
            "shmutils: segment \"/orders\": open: not found (No such file or directory)");
  EXPECT_EQ(e.kind(), ErrorKind::NotFound);
  EXPECT_EQ(e.object(), "segment \"/orders\"");
  EXPECT_EQ(e.operation(), "open");
  EXPECT_EQ(e.sys_errno(), ENOENT);
}

TEST(ErrorTest, ThrowErrnoAddsMmapSpecificExplanation) {
  try {
    throw_errno("mapping \"m\"", "mmap", ENODEV);
    FAIL() << "throw_errno returned";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NotSupported);
    EXPECT_NE(std::string(e.what()).find("does not support mapping"), std::string::npos)
        << e.what();
  }
}

TEST(ErrorTest, EveryKindHasItsOwnText) {
  for (int k = 0; k <= static_cast<int>(ErrorKind::System); ++k) {
    for (int j = 0; j < k; ++j) {
      EXPECT_NE(to_string(static_cast<ErrorKind>(k)), to_string(static_cast<ErrorKind>(j)));
    }
  }
}

}  // namespace
}  // namespace shmutils
