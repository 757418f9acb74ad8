// The failure-semantics matrix (docs/failure-semantics.md) for allocate,
// free, publish and construct-named: what survivors observe when the caller
// is SIGKILLed before, during or after the operation. One test per cell; each
// child dies for real, the survivor reaps and checks.
#include <signal.h>
#include <unistd.h>
#include <optional>

#include "heap_test_support.hpp"
#include "shmutils/fixtures/children.hpp"
#include "shmutils/shm/name_directory.hpp"

namespace shmutils::test {
namespace {

struct Config {
  std::uint64_t generation = 3;
  char label[32] = "orders";
};

[[noreturn]] void die() {
  ::kill(::getpid(), SIGKILL);
  std::abort();
}

class SemanticsTest : public HeapTest {
 protected:
  // Runs body in an attached child that must end by SIGKILL (at a fault point
  // or by calling die()).
  void in_dying_child(const char* point, const std::function<void(Segment&)>& body) {
    fixtures::ChildOutcome child = fixtures::run_in_child(
        [&](fixtures::ChildContext&) {
          Segment own = attach_child();
          std::optional<framework::ScopedKillAt> kill;
          if (point != nullptr) kill.emplace(point);
          body(own);  // returning means the kill never came
        },
        {.expected_signal = SIGKILL});
    ASSERT_TRUE(child.ok()) << (point != nullptr ? point : "die()") << " not reached";
    segment_.reap_dead();
  }
  std::atomic<std::uint64_t>& dest() { return table(0)[0]; }
  bool published(std::uint64_t offset) {
    for (const HeapEntry& e : heap().dump()) {
      if (e.offset == offset) return e.kind == heap::Kind::Published;
    }
    return false;
  }
  void expect_settled(const char* context) {
    expect_healthy(context);
    EXPECT_EQ(leaked_bytes(1), 0U) << context;
  }
};

// --- allocate (allocate_into) ---------------------------------------------

TEST_F(SemanticsTest, AllocateKilledBeforeLeavesNothing) {
  in_dying_child(nullptr, [](Segment&) { die(); });
  EXPECT_EQ(dest().load(), 0U);
  EXPECT_EQ(heap().stats().live, 0U);
  expect_settled("allocate, before");
}

TEST_F(SemanticsTest, AllocateKilledDuringIsAllOrNothing) {
  // Before the location is written: no block. After: block and location.
  in_dying_child("heap.allocate.taken",
                 [](Segment& own) { own.heap().allocate_into(table(own, 0)[0], 64); });
  EXPECT_EQ(dest().load(), 0U);
  EXPECT_EQ(heap().stats().live, 0U);
  in_dying_child("heap.allocate.dest_written",
                 [](Segment& own) { own.heap().allocate_into(table(own, 0)[0], 64); });
  EXPECT_NE(dest().load(), 0U);
  EXPECT_TRUE(published(dest().load())) << "rolled forward by the reaper";
  in_dying_child("heap.allocate.dest_written",
                 [](Segment& own) { own.heap().allocate_into(table(own, 0)[1], 50'000); });
  EXPECT_TRUE(published(table(0)[1].load())) << "the same for a large block";
  expect_settled("allocate, during");
}

TEST_F(SemanticsTest, AllocateKilledAfterKeepsTheBlock) {
  in_dying_child(nullptr, [](Segment& own) {
    own.heap().allocate_into(table(own, 0)[0], 64);
    die();
  });
  EXPECT_TRUE(published(dest().load()));
  expect_settled("allocate, after");
}

// --- free (free_from) -------------------------------------------------------

TEST_F(SemanticsTest, FreeKilledBeforeKeepsTheBlock) {
  std::uint64_t offset = heap().allocate_into(dest(), 64);
  in_dying_child(nullptr, [](Segment&) { die(); });
  EXPECT_EQ(dest().load(), offset);
  EXPECT_TRUE(published(offset));
  expect_settled("free, before");
}

TEST_F(SemanticsTest, FreeKilledDuringIsAllOrNothing) {
  for (std::size_t size : {std::size_t{64}, std::size_t{50'000}}) {
    std::uint64_t offset = heap().allocate_into(dest(), size);
    in_dying_child("heap.free_from.unlinked",
                   [](Segment& own) { own.heap().free_from(table(own, 0)[0]); });
    EXPECT_EQ(dest().load(), 0U) << "unlinked, so freed (rolled forward)";
    EXPECT_FALSE(published(offset));
    EXPECT_EQ(heap().stats().live, 0U);
  }
  heap().allocate_into(dest(), 64);
  in_dying_child("heap.free.state_cached",
                 [](Segment& own) { own.heap().free_from(table(own, 0)[0]); });
  EXPECT_EQ(dest().load(), 0U);
  EXPECT_EQ(heap().stats().live, 0U);
  expect_settled("free, during");
}

TEST_F(SemanticsTest, FreeKilledAfterLeavesItFree) {
  std::uint64_t offset = heap().allocate_into(dest(), 64);
  in_dying_child(nullptr, [](Segment& own) {
    own.heap().free_from(table(own, 0)[0]);
    die();
  });
  EXPECT_EQ(dest().load(), 0U);
  EXPECT_FALSE(published(offset));
  heap().flush_cache();  // ours; what stays cached would be the dead child's
  EXPECT_EQ(heap().stats().cached, 0U) << "its cache came back with the reap";
  expect_settled("free, after");
}

// --- publish (reserve + publish into a location) ---------------------------

TEST_F(SemanticsTest, PublishKilledBeforeFreesTheReservation) {
  in_dying_child(nullptr, [](Segment& own) {
    Reservation reservation = own.heap().reserve(300);
    (void)reservation;
    die();
  });
  EXPECT_EQ(dest().load(), 0U);
  EXPECT_EQ(heap().stats().live, 0U) << "reserved and never published: freed at reap";
  expect_settled("publish, before");
}

TEST_F(SemanticsTest, PublishKilledDuringCompletesIt) {
  in_dying_child("heap.publish.dest_written",
                 [](Segment& own) { own.heap().reserve(300).publish(table(own, 0)[0]); });
  EXPECT_TRUE(published(dest().load())) << "the location holds it: rolled forward";
  expect_settled("publish, during");
}

TEST_F(SemanticsTest, PublishKilledAfterKeepsTheBlock) {
  in_dying_child(nullptr, [](Segment& own) {
    own.heap().reserve(300).publish(table(own, 0)[0]);
    die();
  });
  EXPECT_TRUE(published(dest().load()));
  expect_settled("publish, after");
}

// --- construct named --------------------------------------------------------

TEST_F(SemanticsTest, ConstructNamedKilledBeforeLeavesNoName) {
  in_dying_child(nullptr, [](Segment&) { die(); });
  EXPECT_EQ(segment_.names().find<Config>("config"), nullptr);
  expect_settled("construct named, before");
}

TEST_F(SemanticsTest, ConstructNamedKilledDuringLeavesNoHalfObject) {
  for (const char* point : {"names.construct.entry_claimed", "names.construct.object_built"}) {
    in_dying_child(point, [](Segment& own) { own.names().construct<Config>("config"); });
    EXPECT_EQ(segment_.names().find<Config>("config"), nullptr) << point;
    EXPECT_EQ(heap().stats().live, 0U) << point << ": the block went with the entry";
  }
  // Published into the entry: the constructor had returned; the name stays.
  in_dying_child("names.construct.published",
                 [](Segment& own) { own.names().construct<Config>("config"); });
  Config* config = segment_.names().find<Config>("config");
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(config->generation, 3U);
  EXPECT_TRUE(segment_.audit().ok());
}

TEST_F(SemanticsTest, ConstructNamedKilledAfterKeepsTheObject) {
  in_dying_child(nullptr, [](Segment& own) {
    own.names().construct<Config>("config")->generation = 9;
    die();
  });
  Config* config = segment_.names().find<Config>("config");
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(config->generation, 9U);
  EXPECT_TRUE(segment_.audit().ok());
}

// --- the directory itself ----------------------------------------------------

TEST_F(SemanticsTest, NamesAreTypedUniqueAndFoundByOtherProcesses) {
  NameDirectory& names = segment_.names();
  Config* made = names.construct<Config>("config");
  EXPECT_EQ(kind_of([&] { names.construct<Config>("config"); }), ErrorKind::AlreadyExists);
  EXPECT_EQ(kind_of([&] { names.find<int>("config"); }), ErrorKind::TypeMismatch);
  EXPECT_EQ(kind_of([&] { names.find<int>(""); }), ErrorKind::InvalidArgument);
  EXPECT_EQ(names.find_or_construct<Config>("config"), made);
  made->generation = 42;
  EXPECT_TRUE(fixtures::run_in_child([&](fixtures::ChildContext&) {
                Segment own = attach_child();
                Config* seen = own.names().find<Config>("config");
                ASSERT_NE(seen, nullptr);
                EXPECT_EQ(seen->generation, 42U);
              }).ok());
  EXPECT_TRUE(names.destroy<Config>("config"));
  EXPECT_FALSE(names.destroy<Config>("config"));
  EXPECT_EQ(heap().stats().live, 0U);
}

TEST_F(SemanticsTest, RacingFindOrConstructBuildsExactlyOnce) {
  struct Counter {
    std::atomic<int> constructions{0};
  };
  static std::atomic<int>* shared_constructions = nullptr;
  shared_constructions = reinterpret_cast<std::atomic<int>*>(table(1));
  struct Counted {
    Counted() { shared_constructions->fetch_add(1); }
    std::uint64_t value = 5;
  };
  std::vector<fixtures::RunningChild> children;
  for (int c = 0; c < 4; ++c) {
    children.push_back(fixtures::start_child([&](fixtures::ChildContext&) {
      Segment own = attach_child();
      shared_constructions = reinterpret_cast<std::atomic<int>*>(table(own, 1));
      EXPECT_EQ(own.names().find_or_construct<Counted>("once")->value, 5U);
    }));
  }
  for (auto& child : children) EXPECT_TRUE(child.finish().ok());
  EXPECT_EQ(shared_constructions->load(), 1);
}

TEST_F(SemanticsTest, DestroyKilledMidwayRemovesTheNameAndFreesTheBlock) {
  segment_.names().construct<Config>("config");
  in_dying_child("names.destroy.destructor_ran",
                 [](Segment& own) { own.names().destroy<Config>("config"); });
  EXPECT_EQ(segment_.names().find<Config>("config"), nullptr);
  EXPECT_EQ(heap().stats().live, 0U);
  EXPECT_TRUE(segment_.audit().ok());
}

}  // namespace
}  // namespace shmutils::test
