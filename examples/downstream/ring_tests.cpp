// Tests of the ring buffer with shmutils' fixtures and properties: a fresh
// segment per test, producer and consumer processes at their own addresses,
// and a state-machine property whose workers are killed in the middle of
// pushes and pops.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <shmutils/fixtures/children.hpp>
#include <shmutils/fixtures/segment_test.hpp>
#include <shmutils/fixtures/test_main.hpp>
#include <shmutils/properties/shared_machine.hpp>

#include <new>
#include <ostream>
#include <vector>

#include "ring_buffer.hpp"

namespace {

ring::RingBuffer& ring_in(shmutils::Segment& segment) {
  return *reinterpret_cast<ring::RingBuffer*>(segment.user_area().data());
}

class RingTest : public shmutils::fixtures::SegmentTest {
 protected:
  void SetUp() override {
    SegmentTest::SetUp();
    new (segment_.user_area().data()) ring::RingBuffer();
  }
};

TEST_F(RingTest, KeepsOrderAndRefusesWhenFullOrEmpty) {
  ring::RingBuffer& ring = ring_in(segment_);
  for (std::int64_t v = 1; v <= 4; ++v) EXPECT_TRUE(ring.try_push(v));
  EXPECT_FALSE(ring.try_push(5));
  for (std::int64_t v = 1; v <= 4; ++v) EXPECT_EQ(ring.try_pop(), v);
  EXPECT_EQ(ring.try_pop(), std::nullopt);
}

// A producer and a consumer process pass 10,000 values through it; each
// maps the segment at its own address.
TEST_F(RingTest, AProducerAndAConsumerProcessPassEveryValueInOrder) {
  shmutils::fixtures::ChildrenOptions options;
  options.segment = &segment_;
  shmutils::fixtures::run_children(
      2,
      [](shmutils::fixtures::ChildContext& child) {
        ring::RingBuffer& ring = ring_in(child.segment());
        constexpr std::int64_t kValues = 10'000;
        if (child.index() == 0) {
          for (std::int64_t v = 0; v < kValues;)
            if (ring.try_push(v)) ++v;
        } else {
          for (std::int64_t expected = 0; expected < kValues;) {
            if (auto v = ring.try_pop()) {
              ASSERT_EQ(*v, expected);
              ++expected;
            }
          }
        }
      },
      options);
}

// The ring as a state machine: the model is the list of values it holds.
struct RingSpec {
  struct Model {
    std::vector<std::int64_t> values;  // oldest first
    bool intact = true;                // observed: the ring's own bookkeeping agrees
    bool operator==(const Model&) const = default;
    friend std::ostream& operator<<(std::ostream& os, const Model& m) {
      os << "[";
      for (std::size_t i = 0; i < m.values.size(); ++i) os << (i == 0 ? "" : ", ") << m.values[i];
      return os << "]" << (m.intact ? "" : " with a count that disagrees");
    }
  };
  struct Op {
    bool push = true;
    std::int64_t value = 0;
    friend std::ostream& operator<<(std::ostream& os, const Op& op) {
      return op.push ? os << "push " << op.value : os << "pop";
    }
  };
  struct Result {
    bool done = false;  // pushed, or popped a value
    std::int64_t value = 0;
    bool operator==(const Result&) const = default;
    friend std::ostream& operator<<(std::ostream& os, const Result& r) {
      if (!r.done) return os << "refused";
      return os << "done (" << r.value << ")";
    }
  };

  static Model initial_model() { return {}; }
  static rc::Gen<Op> op(const Model&) {
    return rc::gen::build<Op>(rc::gen::set(&Op::push),
                              rc::gen::set(&Op::value, rc::gen::inRange<std::int64_t>(0, 10)));
  }
  static Result apply(const Op& op, unsigned, Model& model) {
    std::vector<std::int64_t>& values = model.values;
    if (op.push) {
      if (values.size() == ring::RingBuffer::kCapacity) return {};
      values.push_back(op.value);
      return {true, op.value};
    }
    if (values.empty()) return {};
    std::int64_t front = values.front();
    values.erase(values.begin());
    return {true, front};
  }

  static void setup(shmutils::Segment& segment) {
    new (segment.user_area().data()) ring::RingBuffer();
  }
  static Result run(const Op& op, unsigned, shmutils::Segment& segment) {
    ring::RingBuffer& ring = ring_in(segment);
    if (op.push) return ring.try_push(op.value) ? Result{true, op.value} : Result{};
    auto value = ring.try_pop();
    return {value.has_value(), value.value_or(0)};
  }
  // After every step and every recovery: the contents, and whether the
  // ring's derived count still agrees with them.
  static Model observe(shmutils::Segment& segment) {
    ring::RingBuffer::Snapshot snapshot = ring_in(segment).snapshot();
    return {snapshot.values, snapshot.count_agrees};
  }
};

RC_GTEST_PROP(RingProperty, EveryOperationHappensWholeOrNotAtAllWhateverDies, ()) {
  shmutils::properties::check_shared_machine<RingSpec>();
}

}  // namespace

SHMUTILS_TEST_MAIN()
