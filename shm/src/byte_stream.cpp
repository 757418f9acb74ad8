#include "shmutils/shm/byte_stream.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "shmutils/shm/error.hpp"

namespace shmutils {

std::size_t ByteStream::seek(std::int64_t offset, SeekFrom from) {
  std::int64_t origin = from == SeekFrom::Begin     ? 0
                        : from == SeekFrom::Current ? static_cast<std::int64_t>(position_)
                                                    : static_cast<std::int64_t>(range_.size());
  std::int64_t target = origin + offset;
  if (target < 0 || target > static_cast<std::int64_t>(range_.size())) {
    throw Error(ErrorKind::OutOfRange, "byte stream", "seek",
                "position " + std::to_string(target) + " outside [0, " +
                    std::to_string(range_.size()) + "]");
  }
  position_ = static_cast<std::size_t>(target);
  return position_;
}

std::size_t ByteStream::read_into(std::span<std::byte> destination) noexcept {
  std::size_t count = std::min(destination.size(), remainder());
  if (count > 0) std::memcpy(destination.data(), range_.data() + position_, count);
  position_ += count;
  return count;
}

std::vector<std::byte> ByteStream::read(std::size_t count) {
  std::vector<std::byte> out(std::min(count, remainder()));
  read_into(out);
  return out;
}

std::size_t ByteStream::write(std::span<const std::byte> source) noexcept {
  std::size_t count = std::min(source.size(), remainder());
  if (count > 0) std::memcpy(range_.data() + position_, source.data(), count);
  position_ += count;
  return count;
}

}  // namespace shmutils
