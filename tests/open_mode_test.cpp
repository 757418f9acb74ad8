#include "shmutils/shm/open_mode.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "shmutils/properties/generators.hpp"
#include "shmutils/shm/error.hpp"

namespace shmutils {
namespace {

TEST(OpenModeTest, SeedModeStringsMapToExplicitOptions) {
  EXPECT_EQ(from_mode("r"), (OpenMode{Access::ReadOnly, Disposition::OpenExisting}));
  EXPECT_EQ(from_mode("r+"), (OpenMode{Access::ReadWrite, Disposition::OpenExisting}));
  EXPECT_EQ(from_mode("w"), (OpenMode{Access::ReadWrite, Disposition::CreateOrTruncate}));
  EXPECT_EQ(from_mode("w+"), (OpenMode{Access::ReadWrite, Disposition::CreateOrTruncate}));
  EXPECT_EQ(from_mode("x"), (OpenMode{Access::ReadWrite, Disposition::CreateExclusive}));
  EXPECT_EQ(from_mode("x+"), (OpenMode{Access::ReadWrite, Disposition::CreateExclusive}));
  EXPECT_EQ(from_mode("rb"), from_mode("r"));
  EXPECT_EQ(from_mode("r+b"), from_mode("r+"));
  EXPECT_EQ(from_mode("bx+"), from_mode("x+"));
}

TEST(OpenModeTest, InvalidModeStringsAreRejectedWithTheReason) {
  for (const char* bad : {"", "a", "a+", "rw", "r++", "bb", "rbb", "z", "+", "wx", "R"}) {
    try {
      from_mode(bad);
      ADD_FAILURE() << "accepted \"" << bad << "\"";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << bad;
    }
  }
  try {
    from_mode("a");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("append"), std::string::npos);
  }
}

TEST(OpenModeTest, ToModeRoundTripsAndOpenOrCreateHasNoString) {
  for (const char* mode : {"r", "r+", "w+", "x+"}) EXPECT_EQ(to_mode(from_mode(mode)), mode);
  EXPECT_THROW(to_mode(OpenMode{Access::ReadWrite, Disposition::OpenOrCreate}), Error);
}

TEST(OpenModeTest, FlagsConvertBothWays) {
  EXPECT_EQ(to_flags(from_mode("r")), O_RDONLY);
  EXPECT_EQ(to_flags(from_mode("r+")), O_RDWR);
  EXPECT_EQ(to_flags(from_mode("w")), O_RDWR | O_CREAT | O_TRUNC);
  EXPECT_EQ(to_flags(from_mode("x+")), O_RDWR | O_CREAT | O_EXCL);
  EXPECT_EQ(from_flags(O_RDWR | O_CREAT).disposition, Disposition::OpenOrCreate);
}

TEST(OpenModeTest, FlagCombinationsShmCannotHonourAreRejected) {
  for (int bad : {O_WRONLY, O_RDWR | O_EXCL, O_RDONLY | O_CREAT, O_RDONLY | O_TRUNC,
                  O_RDWR | O_CREAT | O_EXCL | O_TRUNC, O_RDWR | O_APPEND, O_RDWR | O_TRUNC}) {
    EXPECT_THROW(from_flags(bad), Error) << bad;
  }
}

RC_GTEST_PROP(OpenModeProperty, FlagsRoundTripForEveryValidMode, (OpenMode mode)) {
  RC_PRE(!(mode.may_create() && !mode.writable()));
  RC_ASSERT(from_flags(to_flags(mode)) == mode);
}

}  // namespace
}  // namespace shmutils
