#include "shmutils/shm/fault_point.hpp"

#include <gtest/gtest.h>

#include <string>

namespace shmutils {
namespace {

SHMUTILS_FAULT_POINT(fp_test_point, "test.point");

TEST(FaultPointTest, WithoutAHookReachingAPointDoesNothing) {
  fp_test_point.reset_hits();
  EXPECT_FALSE(fp_test_point.reached());
  EXPECT_EQ(fp_test_point.hits(), 0U);
}

TEST(FaultPointTest, HookSeesEveryHitNumberedAndCanInjectAFailure) {
  fp_test_point.reset_hits();
  {
    std::uint64_t last_hit = 0;
    std::string last_name;
    FaultHookFunction record([&](const FaultPoint& point, std::uint64_t hit) {
      last_hit = hit;
      last_name = std::string(point.name());
      return hit == 3 ? FaultAction::Fail : FaultAction::Continue;
    });
    ScopedFaultHook hook(record);
    EXPECT_FALSE(fp_test_point.reached());
    EXPECT_EQ(last_hit, 1U);
    EXPECT_EQ(last_name, "test.point");
    EXPECT_FALSE(fp_test_point.reached());
    EXPECT_TRUE(fp_test_point.reached());  // the hook fails the third hit
    EXPECT_EQ(fp_test_point.hits(), 3U);
  }
  EXPECT_FALSE(fp_test_point.reached());  // hook removed with the scope
  EXPECT_EQ(fp_test_point.hits(), 3U);
}

TEST(FaultPointTest, EveryCompiledInPointIsListedBeforeItIsReached) {
  for (const char* name : {"test.point", "segment.init.after_create", "segment.init.after_truncate",
                           "segment.init.before_publish", "registry.attach.after_claim",
                           "registry.attach.table_full", "registry.reap.before_free"}) {
    FaultPoint* point = find_fault_point(name);
    ASSERT_NE(point, nullptr) << name;
    EXPECT_EQ(point->name(), name);
  }
  EXPECT_EQ(find_fault_point("no.such.point"), nullptr);
  EXPECT_GE(all_fault_points().size(), 7U);
}

}  // namespace
}  // namespace shmutils
