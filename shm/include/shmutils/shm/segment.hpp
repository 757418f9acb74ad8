// shmutils::Segment — a formatted shared-memory segment, attached and mapped.
//
// Contract
//   Lives:       the bytes are shared (a named POSIX object or a memfd); a
//                Segment object is this process's attachment: move-only, owning
//                the fd, the mapping and this process's registry slot.
//   Layout:      header, process registry, user area (docs/segment-format.md).
//                Every open validates the header before touching anything else;
//                a corrupt or hostile object yields an Error, never a crash.
//   Creation:    exclusive (O_EXCL), mode 0600 unless told, close-on-exec,
//                backed with posix_fallocate (a full /dev/shm fails here with
//                NoSpace, never as a SIGBUS later). The creator holds an flock
//                while initializing and publishes the magic last.
//   Dead creator: openers wait for initialization at most init_timeout. If no
//                process holds the init flock (its holder died), an opener that
//                may create (open_or_create) takes over and initializes; a plain
//                open fails with NotInitialized. No opener ever hangs.
//   Ownership:   a segment whose file is owned by another uid is refused
//                (PermissionDenied) unless allow_foreign_owner.
//   Lifetime:    destroying a Segment detaches (frees the registry slot,
//                unmaps, closes). The name stays until unlink(): closing and
//                unlinking are separate, explicit steps.
//   Addresses:   each attachment maps wherever it can (or at address_hint);
//                store offsets, offset_ptr or SegmentHandle in the segment,
//                never an absolute pointer.
//   Threads:     a Segment may be shared by threads for reading; resize,
//                refresh and moving need external synchronization.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "shmutils/shm/heap.hpp"
#include "shmutils/shm/mapping.hpp"
#include "shmutils/shm/name_directory.hpp"
#include "shmutils/shm/open_mode.hpp"
#include "shmutils/shm/process_registry.hpp"
#include "shmutils/shm/segment_descriptor.hpp"
#include "shmutils/shm/segment_header.hpp"
#include "shmutils/shm/shm_object.hpp"
#include "shmutils/shm/unique_fd.hpp"

namespace shmutils {

struct SegmentOptions {
  mode_t permissions = 0600;                     // create only
  std::uint32_t max_processes = 64;              // registry slots; create only
  bool register_process = true;                  // claim a slot (writable attachments)
  bool allow_foreign_owner = false;              // accept a segment owned by another uid
  std::chrono::milliseconds init_timeout{2000};  // bound on waiting for a creator
  // Bound on waiting for a lock of the segment's own (the registry's reap
  // lock, the heap's locks, the name directory's) held by another process:
  // past it, Error(Timeout) naming the lock and its holder (a stopped or
  // forged holder never makes a call wait forever).
  std::chrono::milliseconds lock_timeout{10'000};
  void* address_hint = nullptr;  // map exactly here (fails if busy)
  // create only: give the segment a crash-safe heap (heap.hpp) and a name
  // directory (name_directory.hpp). The heap's arena is everything after the
  // fixed regions; the size of such a segment is fixed.
  bool heap = false;
  std::size_t user_size = 4096;   // with heap: raw user area bytes before the arena
  std::uint32_t max_names = 256;  // with heap: name directory entries
  // create only: with group or other write bits in `permissions` (after the
  // umask), every such user may do to the segment what docs/security.md
  // says. Creating one says so on stderr unless this is set to mean it.
  bool writable_by_others = false;
};

class Segment {
 public:
  // Bytes taken by the header and a registry of max_processes slots.
  static std::size_t minimum_size(std::uint32_t max_processes = 64) noexcept;

  // Creates a new named segment of `size` total bytes; AlreadyExists if present.
  static Segment create(std::string_view name, std::size_t size,
                        const SegmentOptions& options = {});
  // Opens an existing named segment.
  static Segment open(std::string_view name, Access access = Access::ReadWrite,
                      const SegmentOptions& options = {});
  // Opens the segment, or creates it with `size` bytes when absent; takes over
  // from a creator that died while initializing.
  static Segment open_or_create(std::string_view name, std::size_t size,
                                const SegmentOptions& options = {});
  // The general form. CreateOrTruncate replaces an existing segment: the old
  // one is unlinked (processes still attached keep it) and a new one created,
  // so nobody's mapping is truncated under them.
  static Segment open(std::string_view name, OpenMode mode, std::size_t size,
                      const SegmentOptions& options = {});
  // The seed's mode strings: "r", "r+", "w", "w+", "x", "x+".
  static Segment open(std::string_view name, std::string_view mode, std::size_t size = 0,
                      const SegmentOptions& options = {});
  // A new anonymous (memfd) segment: shared with children and over sockets.
  static Segment create_anonymous(std::size_t size, const SegmentOptions& options = {});
  // Attaches from a descriptor (named: by name; anonymous: by its fd, which
  // is duplicated, so the caller keeps its own).
  static Segment attach(const SegmentDescriptor& descriptor, const SegmentOptions& options = {});
  static Segment attach(std::string_view descriptor_text, const SegmentOptions& options = {});
  // Adopts an fd of a formatted segment (received with SCM_RIGHTS).
  static Segment adopt(ShmObject object, const SegmentOptions& options = {});

  static void unlink(std::string_view name);
  static bool unlink_if_exists(std::string_view name);

  Segment() = default;
  Segment(Segment&&) noexcept = default;
  // Detaches from the current segment first (its slot lives in its mapping).
  Segment& operator=(Segment&& other) noexcept;
  // Detaches: returns this process's heap caches and unpublished blocks, then
  // frees its registry slot.
  ~Segment();

  // Removes this segment's name; attached processes keep using it.
  void unlink() const;
  // Detaches now: frees the slot, unmaps, closes the fd. The name stays.
  void close();

  const std::string& name() const noexcept { return object_.name(); }
  bool anonymous() const noexcept { return object_.anonymous(); }
  bool writable() const noexcept { return object_.writable(); }
  bool valid() const noexcept { return mapping_.valid(); }
  std::byte* base() const noexcept { return mapping_.data(); }
  // The segment's size (header's total_size); this attachment maps mapped_size().
  std::size_t size() const noexcept;
  std::size_t mapped_size() const noexcept { return mapping_.size(); }
  const SegmentHeader& header() const noexcept { return *reinterpret_cast<SegmentHeader*>(base()); }
  // The header's regions as validated when this attachment was made: use
  // these, not header()'s, which any writer of the segment may change.
  const SegmentLayout& layout() const noexcept { return layout_; }
  Uuid uuid() const noexcept;
  int fd() const noexcept { return object_.fd(); }
  const ShmObject& object() const noexcept { return object_; }
  const Mapping& mapping() const noexcept { return mapping_; }
  Mapping& mapping() noexcept { return mapping_; }

  // The raw user area: from its start to the end of this attachment's mapping,
  // or user_size bytes in a segment with a heap.
  std::span<std::byte> user_area() const noexcept;
  std::uint64_t user_offset() const noexcept { return user_.offset; }

  ProcessRegistry& registry() noexcept { return *registry_; }
  const ProcessRegistry& registry() const noexcept { return *registry_; }
  // Reaps every dead process's slot (its heap holdings included).
  std::size_t reap_dead() { return registry_->reap_dead(); }

  bool has_heap() const noexcept { return heap_.valid(); }
  // The heap and name directory; InvalidArgument without SegmentOptions::heap.
  Heap& heap();
  NameDirectory& names();
  // Checks the heap (live: see Heap::audit) and that every name points at a
  // live published block.
  HeapAudit audit(unsigned timeout_ms = 1000);
  // The same checks without freezing anyone (a read-only attachment, a tool
  // looking at a segment in use): every check of the heap that needs no still
  // moment, and the names. Throws InvalidArgument when there is no heap.
  HeapAudit audit_offline() const;
  // This attachment's registry slot; invalid when not registered.
  const Registration& registration() const noexcept { return registration_; }

  // Descriptor text other processes attach from. For an anonymous segment the
  // fd is this process's (close-on-exec): good for SCM_RIGHTS and for forked
  // children, not for exec. inheritable_descriptor() makes a duplicate that
  // survives exec (owned by this Segment) and names it.
  SegmentDescriptor descriptor() const;
  SegmentDescriptor inheritable_descriptor();

  // Grows or shrinks the segment to new_size bytes (not below the layout's
  // minimum) and remaps this attachment; pointers into it become stale. A
  // segment with a heap has a fixed size (NotSupported).
  void resize(std::size_t new_size);
  // Remaps this attachment to the segment's current size (after another
  // process resized it).
  void refresh();
  // Throws Truncated when another process shrank the object below the size
  // the header records (touching the lost pages would raise SIGBUS).
  void check_not_truncated() const;

  // Offsets <-> addresses within this attachment, bounds checked.
  std::uint64_t to_offset(const void* address) const { return mapping_.to_offset(address); }
  std::byte* to_address(std::uint64_t offset) const { return mapping_.to_address(offset); }

 private:
  static Segment attach_object(ShmObject object, bool created, std::size_t create_size,
                               const SegmentOptions& options);
  // The init protocol (segment_init.cpp): true when this process formatted
  // the segment (it is then attached), false when another did (attach it).
  bool initialize_or_await(bool created, std::size_t create_size, const SegmentOptions& options);
  void map_whole(std::size_t size, void* hint);
  void finish_attach(const SegmentLayout& layout, const SegmentOptions& options);
  std::string describe() const { return object_.describe(); }

  void detach_heap() noexcept;

  ShmObject object_;
  Mapping mapping_;
  SegmentLayout layout_;  // validated at attach
  // The user region as validated at attach (never re-read: a peer may
  // rewrite the header); size 0 without a heap means "to the end".
  SegmentRegion user_{};
  bool bounded_user_area_ = false;
  // Shared so the heap can reach the registry's reapers (Heap::await_reap).
  std::shared_ptr<ProcessRegistry> registry_ = std::make_shared<ProcessRegistry>();
  Registration registration_;
  UniqueFd inheritable_fd_;
  Heap heap_;
  NameDirectory names_;
};

// Sends a segment's descriptor and fd over a Unix socket (SCM_RIGHTS).
void send_segment(int socket, const Segment& segment);
// Receives what send_segment sent and attaches to it.
Segment receive_segment(int socket, const SegmentOptions& options = {});

}  // namespace shmutils
