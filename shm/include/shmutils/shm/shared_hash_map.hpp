// shmutils::SharedHashMap<K, V> — a chained hash map in a segment's heap, used
// by many processes, that survives the death of any of them.
//
// Contract
//   Lives:       anywhere in a segment with a heap (typically a named object).
//                K and V are trivially copyable; K has std::hash and ==. The
//                bucket count is fixed at construction (chains grow).
//   Access:      every member takes the heap of the caller's attachment and
//                runs under the map's RepairingLock; lookups return copies.
//   Recovery:    insert_or_assign publishes a new node at the head of its
//                chain (publish into the bucket word, atomic with the
//                allocation), then unlinks and frees the older node of the
//                same key with free_from (atomic with the unlink). Killed in
//                between, the chain holds both: the next holder keeps the newer
//                (nearer the head) and frees the rest. erase is one free_from.
//                Nothing is ever leaked or torn: a key maps to its old or its
//                new value.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "shmutils/shm/detail/container_fault_points.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/heap.hpp"
#include "shmutils/shm/repairing_lock.hpp"

namespace shmutils {

template <class K, class V>
class SharedHashMap {
  static_assert(std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<V>,
                "keys and values are copied byte-wise");

 public:
  explicit SharedHashMap(std::uint64_t buckets = 1024)
      : bucket_count_(buckets == 0 ? 1 : buckets) {}
  SharedHashMap(const SharedHashMap&) = delete;
  SharedHashMap& operator=(const SharedHashMap&) = delete;

  // True when the key was new.
  bool insert_or_assign(Heap& heap, const K& key, const V& value) {
    RepairingGuard guard(lock_, heap, [&] { repair(heap); });
    std::atomic<std::uint64_t>& head = bucket(heap, key);
    Reservation reservation = heap.reserve(sizeof(Node));
    Node* node = reservation.as<Node>();
    node->next.store(head.load(std::memory_order_relaxed), std::memory_order_relaxed);
    std::memcpy(&node->key, &key, sizeof(K));
    std::memcpy(&node->value, &value, sizeof(V));
    std::uint64_t offset = reservation.publish(head);
    detail::fp_map_linked.reached();
    bool fresh = !unlink_older(heap, heap.pointer_to<Node>(offset)->next, key);
    if (fresh) size_.fetch_add(1, std::memory_order_relaxed);
    return fresh;
  }

  std::optional<V> find(Heap& heap, const K& key) {
    RepairingGuard guard(lock_, heap, [&] { repair(heap); });
    if (buckets_.load() == 0) return std::nullopt;
    for (std::uint64_t at = bucket(heap, key).load(); at != 0;) {
      Node* node = heap.pointer_to<Node>(at);
      if (node->key == key) return node->value;
      at = node->next.load();
    }
    return std::nullopt;
  }

  bool erase(Heap& heap, const K& key) {
    RepairingGuard guard(lock_, heap, [&] { repair(heap); });
    if (buckets_.load() == 0) return false;
    if (!unlink_older(heap, bucket(heap, key), key)) return false;
    size_.fetch_sub(1, std::memory_order_relaxed);
    return true;
  }

  std::vector<std::pair<K, V>> snapshot(Heap& heap) {
    RepairingGuard guard(lock_, heap, [&] { repair(heap); });
    std::vector<std::pair<K, V>> items;
    for_each_link(heap, [&](std::atomic<std::uint64_t>&, Node* node) {
      items.emplace_back(node->key, node->value);
      return true;
    });
    return items;
  }

  std::size_t size() const noexcept { return size_.load(std::memory_order_acquire); }

  // Offsets of the heap blocks this map owns (for leak checks); takes the lock.
  std::vector<std::uint64_t> blocks(Heap& heap) {
    RepairingGuard guard(lock_, heap, [&] { repair(heap); });
    std::vector<std::uint64_t> owned;
    if (buckets_.load() != 0) owned.push_back(buckets_.load());
    for_each_link(heap, [&](std::atomic<std::uint64_t>& link, Node*) {
      owned.push_back(link.load());
      return true;
    });
    return owned;
  }

 private:
  struct Node {
    std::atomic<std::uint64_t> next;
    K key;
    V value;
  };

  std::atomic<std::uint64_t>& bucket(Heap& heap, const K& key) {
    if (buckets_.load(std::memory_order_acquire) == 0) {
      Reservation array = heap.reserve(bucket_count_ * sizeof(std::uint64_t));
      std::memset(array.data(), 0, bucket_count_ * sizeof(std::uint64_t));
      array.publish(buckets_);
    }
    auto* heads = heap.pointer_to<std::atomic<std::uint64_t>>(buckets_.load());
    return heads[std::hash<K>{}(key) % bucket_count_];
  }

  // Frees the first node with `key` found from `link` on; true if one was.
  bool unlink_older(Heap& heap, std::atomic<std::uint64_t>& link, const K& key) {
    for (std::atomic<std::uint64_t>* at = &link; at->load() != 0;) {
      Node* node = heap.pointer_to<Node>(at->load());
      if (node->key == key) {
        detail::fp_map_unlinking.reached();
        heap.free_from(*at, node->next.load());
        return true;
      }
      at = &node->next;
    }
    return false;
  }

  // Calls visit(link, node) for every node; bounded so a cycle cannot hang.
  template <class Visit>
  void for_each_link(Heap& heap, Visit&& visit) {
    if (buckets_.load() == 0) return;
    auto* heads = heap.pointer_to<std::atomic<std::uint64_t>>(buckets_.load());
    for (std::uint64_t b = 0; b < bucket_count_; ++b) {
      std::uint64_t steps = 0;
      for (std::atomic<std::uint64_t>* link = &heads[b]; link->load() != 0; ++steps) {
        if (steps > (std::uint64_t{1} << 32)) {
          throw Error(ErrorKind::CorruptHeap, "shared hash map", "walk", "a chain has a cycle");
        }
        Node* node = heap.pointer_to<Node>(link->load());
        if (!visit(*link, node)) break;
        link = &node->next;
      }
    }
  }

  // After a holder died: in each chain keep the first node of a key (the
  // newest), free the others; recount.
  void repair(Heap& heap) {
    detail::fp_container_repair.reached();
    if (buckets_.load() == 0) {
      size_.store(0);
      return;
    }
    auto* heads = heap.pointer_to<std::atomic<std::uint64_t>>(buckets_.load());
    std::uint64_t count = 0;
    for (std::uint64_t b = 0; b < bucket_count_; ++b) {
      for (std::uint64_t at = heads[b].load(); at != 0;) {
        Node* node = heap.pointer_to<Node>(at);
        ++count;
        while (unlink_older(heap, node->next, node->key)) {
        }
        at = node->next.load();
      }
    }
    size_.store(count);
  }

  RepairingLock lock_{};
  std::atomic<std::uint64_t> buckets_{0};  // array of bucket heads (heap offset)
  std::uint64_t bucket_count_;
  std::atomic<std::uint64_t> size_{0};
};

}  // namespace shmutils
