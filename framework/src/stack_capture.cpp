#include "shmutils/framework/stack_capture.hpp"

#include <cxxabi.h>
#include <libunwind-ptrace.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "shmutils/shm/detail/sys.hpp"

namespace shmutils::framework {

namespace {

std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                             std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(name);
}

// Seize + interrupt, then wait for the stop; restores the previous state in
// the destructor (detach lets a running target go on, a stopped one stays).
class Seized {
 public:
  explicit Seized(pid_t tid) : tid_(tid), error_(sys::ptrace_seize_and_stop(tid)) {}
  ~Seized() {
    if (ok()) sys::ptrace_detach(tid_);
  }
  Seized(const Seized&) = delete;
  Seized& operator=(const Seized&) = delete;
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

 private:
  pid_t tid_;
  std::string error_;
};

// Symbol names are looked up in the target's ELF files, which libunwind maps
// and searches for every frame: milliseconds for a large binary. The names of
// a code address depend only on the file and the offset in it, so they are
// cached by (file, offset) for the life of this process.
struct Region {
  std::uintptr_t start;
  std::uintptr_t end;
  std::uintptr_t offset;
  std::string path;
};

std::vector<Region> code_regions(pid_t tid) {
  std::vector<Region> regions;
  std::string path = "/proc/" + std::to_string(tid) + "/maps";
  std::FILE* maps = std::fopen(path.c_str(), "re");
  if (maps == nullptr) return regions;
  char line[1024];
  while (std::fgets(line, sizeof line, maps) != nullptr) {
    // "start-end perms offset dev inode path"
    char* cursor = line;
    std::uintptr_t start = std::strtoul(cursor, &cursor, 16);
    if (*cursor++ != '-') continue;
    std::uintptr_t end = std::strtoul(cursor, &cursor, 16);
    if (*cursor++ != ' ' || std::strlen(cursor) < 5 || cursor[2] != 'x') continue;
    cursor += 5;  // "r-xp "
    std::uintptr_t offset = std::strtoul(cursor, &cursor, 16);
    for (int field = 0; field < 2 && *cursor != '\0'; ++field) {  // skip dev and inode
      while (*cursor == ' ') ++cursor;
      while (*cursor != ' ' && *cursor != '\0') ++cursor;
    }
    while (*cursor == ' ') ++cursor;
    std::string name(cursor);
    while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
    if (name.empty() || name.front() != '/') continue;  // anonymous or [vdso]: not cacheable
    regions.push_back({start, end, offset, name});
  }
  std::fclose(maps);
  return regions;
}

std::mutex g_symbol_mutex;
std::unordered_map<std::string, std::pair<std::string, std::uintptr_t>> g_symbols;

std::string symbol_key(const std::vector<Region>& regions, std::uintptr_t ip) {
  for (const Region& r : regions) {
    if (ip >= r.start && ip < r.end) return r.path + "+" + std::to_string(ip - r.start + r.offset);
  }
  return {};
}

}  // namespace

StackTrace capture_stack(pid_t tid, std::size_t max_frames) {
  StackTrace trace;
  trace.tid = tid;
  Seized seized(tid);
  if (!seized.ok()) {
    trace.error = seized.error();
    return trace;
  }
  unw_addr_space_t space = unw_create_addr_space(&_UPT_accessors, 0);
  if (space != nullptr) unw_set_caching_policy(space, UNW_CACHE_PER_THREAD);
  if (space == nullptr) {
    trace.error = "libunwind: cannot create an address space";
    return trace;
  }
  void* context = _UPT_create(tid);
  unw_cursor_t cursor;
  if (context == nullptr || unw_init_remote(&cursor, space, context) != 0) {
    trace.error = "libunwind: cannot start unwinding the stopped process";
  } else {
    std::vector<Region> regions = code_regions(tid);
    do {
      unw_word_t ip = 0;
      unw_get_reg(&cursor, UNW_REG_IP, &ip);
      StackFrame frame;
      frame.address = static_cast<std::uintptr_t>(ip);
      std::string key = symbol_key(regions, frame.address);
      bool found = false;
      if (!key.empty()) {
        std::lock_guard lock(g_symbol_mutex);
        if (auto it = g_symbols.find(key); it != g_symbols.end()) {
          frame.function = it->second.first;
          frame.offset = it->second.second;
          found = true;
        }
      }
      if (!found) {
        char name[512];
        unw_word_t offset = 0;
        if (unw_get_proc_name(&cursor, name, sizeof name, &offset) == 0) {
          frame.function = demangle(name);
          frame.offset = static_cast<std::uintptr_t>(offset);
        } else {
          frame.function = "??";
        }
        if (!key.empty()) {
          std::lock_guard lock(g_symbol_mutex);
          g_symbols.emplace(key, std::make_pair(frame.function, frame.offset));
        }
      }
      trace.frames.push_back(std::move(frame));
    } while (trace.frames.size() < max_frames && unw_step(&cursor) > 0);
  }
  if (context != nullptr) _UPT_destroy(context);
  unw_destroy_addr_space(space);
  return trace;
}

std::string StackTrace::to_string() const {
  if (!error.empty()) return "  (no stack for tid " + std::to_string(tid) + ": " + error + ")\n";
  std::string text;
  char line[64];
  for (std::size_t i = 0; i < frames.size(); ++i) {
    std::snprintf(line, sizeof line, "  #%-2zu 0x%012lx ", i,
                  static_cast<unsigned long>(frames[i].address));
    text += line;
    text += frames[i].function;
    if (frames[i].function != "??") {
      std::snprintf(line, sizeof line, "+0x%lx", static_cast<unsigned long>(frames[i].offset));
      text += line;
    }
    text += "\n";
  }
  return text;
}

}  // namespace shmutils::framework
