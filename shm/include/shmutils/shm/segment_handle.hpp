// shmutils::SegmentHandle<T> and PortableHandle<T> — how to name an object in
// a segment without an absolute address.
//
//   SegmentHandle<T>   an offset from the segment base, typed. Standard layout,
//                      8 bytes: store it inside a segment or a message. Resolve
//                      it against any attachment of the same segment.
//   PortableHandle<T>  segment descriptor + offset + type name, with a one-line
//                      text form ("<descriptor>#offset=4096;type=Order"):
//                      hand it to another process through argv, the
//                      environment or a pipe; it attaches and resolves it,
//                      checking the segment's uuid and the type name.
//
// Contract
//   Resolving checks bounds (the whole T inside the attachment) and alignment,
//   throwing OutOfRange / InvalidArgument; a handle is never trusted blindly.
//   Offset 0 is the null handle (offset 0 is the header, never an object).
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "shmutils/shm/error.hpp"
#include "shmutils/shm/segment.hpp"
#include "shmutils/shm/segment_descriptor.hpp"
#include "shmutils/shm/type_name.hpp"

namespace shmutils {

template <class T>
class SegmentHandle {
 public:
  SegmentHandle() noexcept = default;
  explicit SegmentHandle(std::uint64_t offset) noexcept : offset_(offset) {}
  // The handle of an object inside `segment`'s mapping.
  static SegmentHandle of(const Segment& segment, const T* object) {
    return SegmentHandle(segment.to_offset(object));
  }

  std::uint64_t offset() const noexcept { return offset_; }
  explicit operator bool() const noexcept { return offset_ != 0; }

  T* resolve(const Segment& segment) const {
    const std::string object = "segment \"" + segment.name() + "\"";
    if (offset_ == 0) throw Error(ErrorKind::InvalidArgument, object, "resolve", "null handle");
    if (offset_ % alignof(T) != 0) {
      throw Error(ErrorKind::InvalidArgument, object, "resolve",
                  "offset " + std::to_string(offset_) + " is not aligned for " +
                      std::string(type_name<T>()));
    }
    std::byte* address = segment.mapping().bytes(offset_, sizeof(T)).data();
    return reinterpret_cast<T*>(address);
  }

  friend bool operator==(const SegmentHandle&, const SegmentHandle&) = default;

 private:
  std::uint64_t offset_ = 0;
};

static_assert(std::is_standard_layout_v<SegmentHandle<int>>);

template <class T>
struct PortableHandle {
  SegmentDescriptor segment;
  std::uint64_t offset = 0;

  static PortableHandle of(const Segment& attached, const T* object) {
    return {attached.descriptor(), attached.to_offset(object)};
  }

  std::string to_string() const {
    return segment.to_string() + "#offset=" + std::to_string(offset) +
           ";type=" + std::string(type_name<T>());
  }

  static PortableHandle parse(std::string_view text) {
    auto bad = [&](const std::string& why) -> PortableHandle {
      throw Error(ErrorKind::InvalidArgument, "handle \"" + std::string(text) + "\"", "parse", why);
    };
    std::size_t hash = text.rfind('#');
    if (hash == std::string_view::npos) return bad("no '#offset=' part");
    PortableHandle handle;
    handle.segment = SegmentDescriptor::parse(text.substr(0, hash));
    std::string_view rest = text.substr(hash + 1);
    constexpr std::string_view kOffset = "offset=";
    constexpr std::string_view kType = ";type=";
    if (rest.substr(0, kOffset.size()) != kOffset) return bad("expected offset= after '#'");
    rest.remove_prefix(kOffset.size());
    std::size_t type_at = rest.find(kType);
    if (type_at == std::string_view::npos) return bad("no ;type= part");
    std::string_view number = rest.substr(0, type_at);
    auto [p, ec] = std::from_chars(number.data(), number.data() + number.size(), handle.offset);
    if (ec != std::errc() || p != number.data() + number.size() || number.empty()) {
      return bad("offset is not a number");
    }
    std::string_view type = rest.substr(type_at + kType.size());
    if (type != type_name<T>()) {
      return bad("made for type " + std::string(type) + ", parsed as " +
                 std::string(type_name<T>()));
    }
    return handle;
  }

  // Resolves against an attachment, which must be the segment the handle names.
  T* resolve(const Segment& attached) const {
    if (attached.uuid() != segment.uuid) {
      throw Error(ErrorKind::WrongSegment, "segment \"" + attached.name() + "\"", "resolve",
                  "the handle names segment " + segment.uuid.to_string());
    }
    return SegmentHandle<T>(offset).resolve(attached);
  }
};

}  // namespace shmutils
