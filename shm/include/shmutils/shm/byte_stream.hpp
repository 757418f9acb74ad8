// shmutils::ByteStream — a file-like cursor over a byte range (a mapping, a
// segment's user area): seek / tell / read / write, clamped at the end.
//
// Contract
//   Lives:       process-local; the cursor is this object's own, never shared
//                with an allocator or another stream (the seed shared them).
//   Bounds:      reads and writes stop at the end of the range and return how
//                many bytes moved; seeking outside [0, size] throws OutOfRange.
//   Concurrency: none; the bytes themselves may be shared, the cursor is not.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace shmutils {

enum class SeekFrom { Begin, Current, End };

class ByteStream {
 public:
  explicit ByteStream(std::span<std::byte> range) noexcept : range_(range) {}

  std::size_t seek(std::int64_t offset, SeekFrom from = SeekFrom::Begin);
  std::size_t tell() const noexcept { return position_; }
  std::size_t size() const noexcept { return range_.size(); }
  // Bytes from the cursor to the end.
  std::size_t remainder() const noexcept { return range_.size() - position_; }

  std::size_t read_into(std::span<std::byte> destination) noexcept;
  std::vector<std::byte> read(std::size_t count);
  std::size_t write(std::span<const std::byte> source) noexcept;

 private:
  std::span<std::byte> range_;
  std::size_t position_ = 0;
};

}  // namespace shmutils
