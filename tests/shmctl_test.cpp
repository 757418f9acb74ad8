// shmctl as users run it: every command, --json, exit statuses, and what it
// finds in a segment with a dead process and in a corrupted one.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "shmctl_support.hpp"
#include "shmutils/fixtures/children.hpp"
#include "shmutils/fixtures/unique_name.hpp"
#include "shmutils/framework/child_process.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/segment.hpp"
#include "shmutils/shm/shared_vector.hpp"
#include "shmutils/shm/shm_object.hpp"
#include "test_support.hpp"

namespace shmutils::test {
namespace {

class ShmctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SegmentOptions options;
    options.heap = true;
    segment_ = Segment::create(guard_.name(), 4 << 20, options);
  }
  fixtures::ScopedSegmentName guard_{"shmctl"};
  Segment segment_;
};

// ls reads every segment in /dev/shm, other programs' too: one that shrinks
// while it is read (SIGBUS past its new end) is a row saying so, and the
// listing goes on. A child shrinks and regrows this test's segment for as
// long as the listings run.
TEST_F(ShmctlTest, LsKeepsListingWhenASegmentShrinksWhileItIsRead) {
  auto* numbers = segment_.names().construct<SharedVector<int>>("numbers");
  for (int i = 0; i < 5000; ++i) numbers->push_back(segment_.heap(), i);
  const auto full = static_cast<std::uint64_t>(sys::fstat(segment_.fd(), "segment").st_size);
  auto resizer = fixtures::start_child([&](fixtures::ChildContext&) {
    for (;;) {
      sys::ftruncate(segment_.fd(), 8192, "segment");
      sys::ftruncate(segment_.fd(), full, "segment");
    }
  });
  constexpr int kListings = 20;
  int shrank_rows = 0;
  for (int i = 0; i < kListings; ++i) {
    ToolRun ls = shmctl({"ls", "--json"});
    ASSERT_EQ(ls.code, 0) << "listing " << i << ": " << ls.out;
    int rows = 0;
    for (const auto& row : ls.json()) {
      if (row["name"] != guard_.name()) continue;
      ++rows;
      if (row["shmutils"].get<bool>()) continue;
      // Shrinking loses what lay past the new end: regrown, it reads as zeros.
      EXPECT_TRUE(row["why"] == "truncated by another process" || row["why"] == "corrupt header")
          << row.dump();
      ++shrank_rows;
    }
    EXPECT_EQ(rows, 1) << ls.out;
  }
  EXPECT_TRUE(resizer.kill().ok());
  sys::ftruncate(segment_.fd(), full, "segment");  // it may have died with the segment short
  std::printf("%d of %d listings saw the segment shrink\n", shrank_rows, kListings);
}

TEST_F(ShmctlTest, ListsInspectsAuditsReapsAndRemoves) {
  auto* numbers = segment_.names().construct<SharedVector<int>>("numbers");
  for (int i = 0; i < 50; ++i) numbers->push_back(segment_.heap(), i);
  ASSERT_TRUE(fixtures::run_in_child(
                  [&](fixtures::ChildContext&) {
                    Segment own = Segment::open(guard_.name());
                    own.heap().free(own.heap().allocate(64));  // leaves objects in its cache
                    ::kill(::getpid(), SIGKILL);
                  },
                  {.expected_signal = SIGKILL})
                  .ok());

  ToolRun ls = shmctl({"ls", "--json"});
  ASSERT_EQ(ls.code, 0) << ls.out;
  bool listed = false;
  for (const auto& row : ls.json()) {
    if (row["name"] != guard_.name()) continue;
    listed = true;
    EXPECT_TRUE(row["shmutils"].get<bool>());
    EXPECT_EQ(row["processes_alive"], 1) << "this test process";
    EXPECT_EQ(row["processes_dead"], 1) << "the killed child";
    EXPECT_GT(row["bytes_used"].get<std::uint64_t>(), 0U);
  }
  EXPECT_TRUE(listed) << ls.out;

  ToolRun inspect = shmctl({"inspect", guard_.name(), "--json"});
  ASSERT_EQ(inspect.code, 0) << inspect.out;
  nlohmann::json facts = inspect.json();
  EXPECT_EQ(facts["layout_version"], kLayoutVersion);
  EXPECT_GT(facts["heap"]["cached"].get<std::uint64_t>(), 0U) << "the dead child's cache";
  ASSERT_EQ(facts["named_objects"].size(), 1U);
  EXPECT_EQ(facts["named_objects"][0]["name"], "numbers");
  EXPECT_NE(facts["named_objects"][0]["type"].get<std::string>().find("SharedVector"),
            std::string::npos);
  ToolRun text = shmctl({"inspect", guard_.name()});
  EXPECT_NE(text.out.find("1 dead"), std::string::npos) << text.out;

  ToolRun audit = shmctl({"audit", guard_.name(), "--json"});
  EXPECT_EQ(audit.code, 1) << "a dead process still holds cached objects: " << audit.out;
  EXPECT_FALSE(audit.json()["ok"].get<bool>());

  ToolRun reap = shmctl({"reap", guard_.name(), "--json"});
  ASSERT_EQ(reap.code, 0) << reap.out;
  EXPECT_EQ(reap.json()["reaped"], 1);
  EXPECT_GT(reap.json()["heap_cached_returned"].get<std::uint64_t>(), 0U);

  EXPECT_EQ(shmctl({"audit", guard_.name()}).code, 0);
  EXPECT_EQ(shmctl({"audit", guard_.name(), "--live"}).code, 0);

  ToolRun refused = shmctl({"rm", guard_.name()});
  EXPECT_EQ(refused.code, 1) << "this process is attached";
  EXPECT_EQ(shmctl({"rm", guard_.name(), "--force"}).code, 0);
  ToolRun gone = shmctl({"inspect", guard_.name(), "--json"});
  EXPECT_EQ(gone.code, 2);
  EXPECT_EQ(gone.json()["kind"], "not found");
}

TEST_F(ShmctlTest, AuditFindsACorruptedBlockHeader) {
  std::uint64_t block = segment_.heap().allocate(10'000);
  // Scribble over the block's header, as a stray write would.
  auto* header = reinterpret_cast<std::uint64_t*>(segment_.heap().pointer(block) - 16);
  const std::uint64_t original = header[0];
  header[0] = 0x7777;
  ToolRun audit = shmctl({"audit", guard_.name(), "--json"});
  EXPECT_EQ(audit.code, 1) << audit.out;
  ASSERT_FALSE(audit.json()["problems"].empty());
  header[0] = original;  // the test process's own detach walks the heap
  EXPECT_EQ(shmctl({"audit", guard_.name()}).code, 0);
}

// Another process truncating the segment over and over while shmctl reads
// it: every command ends with a clear result or error (exit 0, 1 or 2),
// never with SIGBUS. Bounded by runs, not by time.
TEST_F(ShmctlTest, ASegmentTruncatedWhileItIsReadGivesTruncatedNotSigbus) {
  for (std::size_t i = 0; i < 20; ++i) (void)segment_.heap().allocate(1000 + i * 100);
  const std::string name = guard_.name();
  auto truncator = fixtures::start_child([name](fixtures::ChildContext&) {
    ShmObject object = ShmObject::open(name, "r+");
    for (;;) {
      (void)::ftruncate(object.fd(), 8192);
      (void)::ftruncate(object.fd(), 4 << 20);
    }
  });
  int truncated = 0;
  for (int run = 0; run < 16; ++run) {
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"--json", "inspect", name},
          std::vector<std::string>{"--json", "audit", name},
          std::vector<std::string>{"audit", name},
          std::vector<std::string>{"--json", "reap", name}}) {
      ToolRun result = shmctl(args);
      EXPECT_GE(result.code, 0);
      EXPECT_LE(result.code, 2) << "shmctl " << args[args.size() - 2] << " died: exit "
                                << result.code << "\n"
                                << result.out;
      if (result.out.find("truncated by another process") != std::string::npos) ++truncated;
    }
  }
  truncator.kill();
  ASSERT_EQ(::ftruncate(segment_.fd(), 4 << 20), 0);  // as it was, for our own detach
  std::printf("--json runs that reported the truncation: %d of 48\n", truncated);
}

TEST(ShmctlUsageTest, ClearErrorsAndHelp) {
  EXPECT_EQ(shmctl({"--help"}).code, 0);
  EXPECT_EQ(shmctl({}).code, 2) << "a subcommand is required";
  EXPECT_EQ(shmctl({"inspect"}).code, 2) << "NAME is required";
  EXPECT_EQ(shmctl({"frobnicate"}).code, 2);
  ToolRun missing = shmctl({"audit", "/shmutils-no-such-segment", "--json"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_EQ(missing.json()["kind"], "not found");
}

}  // namespace
}  // namespace shmutils::test
