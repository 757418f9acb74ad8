// The shared containers across processes and under SIGKILL at their fault
// points and the heap's: after every death the next user repairs, nothing
// leaks (every live heap byte belongs to the container), and the contents are
// what the completed operations say.
#include <signal.h>

#include <numeric>
#include <random>

#include "heap_test_support.hpp"
#include "shmutils/fixtures/children.hpp"
#include "shmutils/shm/shared_hash_map.hpp"
#include "shmutils/shm/shared_queue.hpp"
#include "shmutils/shm/shared_vector.hpp"

namespace shmutils::test {
namespace {

class ContainersTest : public HeapTest {
 protected:
  // Runs body in an attached child that must die at `point` (hit `hit`).
  void kill_in_child(const char* point, std::uint64_t hit,
                     const std::function<void(Segment&)>& body) {
    fixtures::ChildOutcome child = fixtures::run_in_child(
        [&](fixtures::ChildContext&) {
          Segment own = attach_child();
          framework::ScopedKillAt kill(point, hit);
          body(own);
        },
        {.expected_signal = SIGKILL});
    ASSERT_TRUE(child.ok()) << point << " hit " << hit << " not reached";
  }
  std::uint64_t live_except(const std::vector<std::uint64_t>& owned) {
    std::uint64_t total = heap().stats().live;
    for (std::uint64_t offset : owned) total -= heap().usable_size(offset);
    return total;
  }
};

TEST_F(ContainersTest, AVectorIsSharedBetweenProcesses) {
  auto* numbers = segment_.names().construct<SharedVector<std::uint64_t>>("numbers");
  ASSERT_TRUE(fixtures::run_in_child([&](fixtures::ChildContext&) {
                Segment own = attach_child();
                auto* mine = own.names().find<SharedVector<std::uint64_t>>("numbers");
                ASSERT_NE(mine, nullptr);
                for (std::uint64_t i = 0; i < 1000; ++i) mine->push_back(own.heap(), i);
              }).ok());
  std::vector<std::uint64_t> seen = numbers->snapshot(heap());
  ASSERT_EQ(seen.size(), 1000U);
  for (std::uint64_t i = 0; i < 1000; ++i) ASSERT_EQ(seen[i], i);
  EXPECT_EQ(numbers->pop_back(heap()), 999U);
  numbers->set(heap(), 0, 77);
  EXPECT_EQ(numbers->get(heap(), 0), 77U);
  EXPECT_EQ(kind_of([&] { (void)numbers->get(heap(), 5000); }), ErrorKind::OutOfRange);
  numbers->clear(heap());
  EXPECT_EQ(numbers->size(), 0U);
}

TEST_F(ContainersTest, AVectorSurvivesDeathsInsideItsOperations) {
  auto* numbers = segment_.names().construct<SharedVector<std::uint64_t>>("numbers");
  std::uint64_t hit = 1;
  for (const char* point : {"container.vector.grown", "container.vector.written",
                            "heap.publish.dest_written", "heap.free_from.unlinked"}) {
    kill_in_child(point, hit++, [&](Segment& own) {
      auto* mine = own.names().find<SharedVector<std::uint64_t>>("numbers");
      for (;;) mine->push_back(own.heap(), mine->size());
    });
    numbers->push_back(heap(), numbers->size());  // the next user repairs
    std::vector<std::uint64_t> seen = numbers->snapshot(heap());
    for (std::uint64_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], i) << "after " << point;
    segment_.reap_dead();
    std::vector<std::uint64_t> owned = numbers->blocks();
    owned.push_back(heap().offset_of(numbers));
    EXPECT_EQ(live_except(owned), 0U) << "leaked after a death at " << point;
  }
  expect_healthy("vector after four deaths");
}

TEST_F(ContainersTest, AHashMapKeepsTheNewestValueAcrossDeaths) {
  auto* map = segment_.names().construct<SharedHashMap<std::uint64_t, std::uint64_t>>("map", 64U);
  for (std::uint64_t k = 0; k < 200; ++k) EXPECT_TRUE(map->insert_or_assign(heap(), k, k));
  EXPECT_FALSE(map->insert_or_assign(heap(), 5, 500));
  EXPECT_EQ(map->find(heap(), 5), 500U);
  EXPECT_TRUE(map->erase(heap(), 6));
  EXPECT_FALSE(map->erase(heap(), 6));
  EXPECT_EQ(map->find(heap(), 6), std::nullopt);
  EXPECT_EQ(map->size(), 199U);
  // Killed between linking the new node and unlinking the old one.
  kill_in_child("container.map.linked", 1, [](Segment& own) {
    own.names().find<SharedHashMap<std::uint64_t, std::uint64_t>>("map")->insert_or_assign(
        own.heap(), 7, 700);
  });
  EXPECT_EQ(map->find(heap(), 7), 700U) << "the newer node wins";
  EXPECT_EQ(map->size(), 199U) << "the duplicate was freed, the count recomputed";
  kill_in_child("heap.free_from.unlinked", 1, [](Segment& own) {
    own.names().find<SharedHashMap<std::uint64_t, std::uint64_t>>("map")->erase(own.heap(), 8);
  });
  EXPECT_EQ(map->find(heap(), 8), std::nullopt);
  EXPECT_EQ(map->size(), 198U);
  segment_.reap_dead();
  std::vector<std::uint64_t> owned = map->blocks(heap());
  owned.push_back(heap().offset_of(map));
  EXPECT_EQ(live_except(owned), 0U);
  expect_healthy("map after deaths");
}

TEST_F(ContainersTest, AQueueDeliversEveryCommittedElementExactlyOnce) {
  auto* queue = segment_.names().construct<SharedQueue<std::uint64_t>>("queue", 64U);
  constexpr int kProducers = 3;
  constexpr std::uint64_t kEach = 3000;
  std::vector<fixtures::RunningChild> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.push_back(fixtures::start_child([&, p](fixtures::ChildContext&) {
      Segment own = attach_child();
      auto* q = own.names().find<SharedQueue<std::uint64_t>>("queue");
      for (std::uint64_t i = 0; i < kEach; ++i) q->push(own.heap(), std::uint64_t(p) << 32 | i);
    }));
  }
  std::vector<std::uint64_t> next(kProducers, 0);
  for (std::uint64_t n = 0; n < kProducers * kEach; ++n) {
    auto value =
        queue->pop_until(heap(), std::chrono::steady_clock::now() + std::chrono::seconds(20));
    ASSERT_TRUE(value.has_value()) << "starved after " << n;
    std::uint64_t producer = *value >> 32;
    ASSERT_LT(producer, std::uint64_t{kProducers});
    ASSERT_EQ(*value & 0xffffffffU, next[producer]++) << "FIFO per producer";
  }
  for (auto& p : producers) EXPECT_TRUE(p.finish().ok());
  EXPECT_FALSE(queue->try_pop(heap()).has_value());
  EXPECT_FALSE(
      queue->pop_until(heap(), std::chrono::steady_clock::now() + std::chrono::milliseconds(20))
          .has_value());
}

TEST_F(ContainersTest, AQueueStaysConsistentWhenProducersAndConsumersDie) {
  auto* queue = segment_.names().construct<SharedQueue<std::uint64_t>>("queue", 16U);
  for (const char* point : {"container.queue.written", "container.queue.read"}) {
    for (std::uint64_t hit : {1U, 7U}) {
      kill_in_child(point, hit, [](Segment& own) {
        auto* q = own.names().find<SharedQueue<std::uint64_t>>("queue");
        for (std::uint64_t i = 0;; ++i) {
          q->push(own.heap(), i);
          if (i % 3 == 0) (void)q->try_pop(own.heap());
        }
      });
      // The survivor is not blocked and sees a consistent queue.
      EXPECT_EQ(queue->size(), queue->pushed() - queue->popped());
      EXPECT_LE(queue->size(), queue->capacity());
      while (queue->try_pop(heap())) {
      }
      EXPECT_TRUE(queue->try_push(heap(), 1));
      EXPECT_EQ(queue->pop(heap()), 1U);
    }
  }
  segment_.reap_dead();
  EXPECT_EQ(live_except({queue->ring_block(), heap().offset_of(queue)}), 0U);
  expect_healthy("queue after deaths");
}

}  // namespace
}  // namespace shmutils::test
