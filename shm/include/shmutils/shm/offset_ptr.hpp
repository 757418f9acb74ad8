// shmutils::offset_ptr<T> — a self-relative pointer for links inside a segment.
//
// Contract
//   Lives:       anywhere, usually inside a segment. It stores the distance
//                from its own address to the target, so the same bytes mean
//                the same link wherever each process maps the segment.
//   Null:        distance 0 is null, so zero-filled memory (a fresh segment)
//                holds null pointers. An offset_ptr therefore cannot point at
//                itself (asserted in debug builds).
//   Copying:     copy and assignment recompute the distance for the new
//                location; copying bytes with memcpy does NOT (the link would
//                then be relative to the old place).
//   Iterators:   models std::contiguous_iterator, so standard algorithms and
//                ranges accept it where they accept T*.
//   Concurrency: like T*: not atomic (see AtomicTaggedOffset for that).
//   Layout:      one std::int64_t; standard layout, trivially destructible.
#pragma once

#include <cassert>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <type_traits>

namespace shmutils {

template <class T>
class offset_ptr {
 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using difference_type = std::ptrdiff_t;
  using pointer = T*;
  using reference = std::add_lvalue_reference_t<T>;
  using iterator_category = std::random_access_iterator_tag;
  using iterator_concept = std::contiguous_iterator_tag;

  offset_ptr() noexcept = default;
  offset_ptr(std::nullptr_t) noexcept {}           // NOLINT: implicit like T*
  offset_ptr(T* target) noexcept { set(target); }  // NOLINT: implicit like T*
  offset_ptr(const offset_ptr& other) noexcept { set(other.get()); }
  template <class U>
  requires std::is_convertible_v<U*, T*> offset_ptr(const offset_ptr<U>& other)
  noexcept {  // NOLINT: implicit like U* -> T*
    set(other.get());
  }
  // Self-assignment is harmless: the target is read before the distance is written.
  offset_ptr& operator=(const offset_ptr& other) noexcept {  // NOLINT(cert-oop54-cpp)
    set(other.get());
    return *this;
  }
  offset_ptr& operator=(T* target) noexcept {
    set(target);
    return *this;
  }
  offset_ptr& operator=(std::nullptr_t) noexcept {
    distance_ = 0;
    return *this;
  }

  T* get() const noexcept {
    if (distance_ == 0) return nullptr;
    // NOLINTNEXTLINE(performance-no-int-to-ptr): an offset pointer is this cast
    return reinterpret_cast<T*>(reinterpret_cast<std::uintptr_t>(this) +
                                static_cast<std::uintptr_t>(distance_));
  }
  T* operator->() const noexcept { return get(); }
  template <class U = T>
  requires(!std::is_void_v<U>) U& operator*() const noexcept { return *get(); }
  template <class U = T>
  requires(!std::is_void_v<U>) U& operator[](difference_type index) const noexcept {
    return get()[index];
  }
  explicit operator bool() const noexcept { return distance_ != 0; }
  // The raw distance stored, for diagnostics and serialization tests.
  std::int64_t distance() const noexcept { return distance_; }

  offset_ptr& operator++() noexcept { return *this += 1; }
  offset_ptr operator++(int) noexcept {
    offset_ptr old(*this);
    ++*this;
    return old;
  }
  offset_ptr& operator--() noexcept { return *this -= 1; }
  offset_ptr operator--(int) noexcept {
    offset_ptr old(*this);
    --*this;
    return old;
  }
  offset_ptr& operator+=(difference_type n) noexcept {
    set(get() + n);
    return *this;
  }
  offset_ptr& operator-=(difference_type n) noexcept {
    set(get() - n);
    return *this;
  }
  friend offset_ptr operator+(const offset_ptr& p, difference_type n) noexcept {
    return offset_ptr(p.get() + n);
  }
  friend offset_ptr operator+(difference_type n, const offset_ptr& p) noexcept {
    return offset_ptr(p.get() + n);
  }
  friend offset_ptr operator-(const offset_ptr& p, difference_type n) noexcept {
    return offset_ptr(p.get() - n);
  }
  friend difference_type operator-(const offset_ptr& a, const offset_ptr& b) noexcept {
    return a.get() - b.get();
  }
  friend bool operator==(const offset_ptr& a, const offset_ptr& b) noexcept {
    return a.get() == b.get();
  }
  friend std::strong_ordering operator<=>(const offset_ptr& a, const offset_ptr& b) noexcept {
    return std::compare_three_way{}(a.get(), b.get());
  }
  friend bool operator==(const offset_ptr& a, std::nullptr_t) noexcept { return !a; }

 private:
  void set(T* target) noexcept {
    if (target == nullptr) {
      distance_ = 0;
      return;
    }
    distance_ = static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(target) -
                                          reinterpret_cast<std::uintptr_t>(this));
    assert(distance_ != 0 && "an offset_ptr cannot point at itself: distance 0 means null");
  }

  std::int64_t distance_ = 0;
};

static_assert(std::is_standard_layout_v<offset_ptr<int>>);
static_assert(sizeof(offset_ptr<int>) == sizeof(std::int64_t));

}  // namespace shmutils

// std::to_address support: an offset_ptr is a fancy pointer.
template <class T>
struct std::pointer_traits<shmutils::offset_ptr<T>> {
  using pointer = shmutils::offset_ptr<T>;
  using element_type = T;
  using difference_type = std::ptrdiff_t;
  template <class U>
  using rebind = shmutils::offset_ptr<U>;
  static T* to_address(const pointer& p) noexcept { return p.get(); }
};
