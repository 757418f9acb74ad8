// shmctl — looks at shmutils segments from outside: lists this user's
// segments, inspects one (header, processes, heap figures, lock holders, named
// objects), audits its heap, reaps the slots of dead processes, removes names.
// Read-only unless the command says otherwise (reap, rm, audit --live).
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli_checks.hpp"
#include "printable.hpp"
#include "shmutils/shm/detail/sys.hpp"
#include "shmutils/shm/error.hpp"
#include "shmutils/shm/heap.hpp"
#include "shmutils/shm/inspection.hpp"
#include "shmutils/shm/name_directory.hpp"
#include "shmutils/shm/segment.hpp"

namespace {

using namespace shmutils;
using nlohmann::json;
using tools::printable;

constexpr int kOk = 0;
constexpr int kFindings = 1;  // audit problems, or rm refused
constexpr int kError = 2;     // bad arguments, missing or unreadable segment

// --timeout: the bound on every wait (a creator still initializing, a lock
// of the segment held by a stopped or unreachable process).
std::chrono::milliseconds g_timeout{3000};
// --any-owner: read segments that belong to other users too.
bool g_any_owner = false;

SegmentOptions tool_options() {
  SegmentOptions options;
  options.register_process = false;
  options.init_timeout = g_timeout;
  options.lock_timeout = g_timeout;
  options.allow_foreign_owner = g_any_owner;
  return options;
}

// Opens for looking only: no process slot claimed.
Segment open_read_only(const std::string& name) {
  return Segment::open(name, Access::ReadOnly, tool_options());
}

// "this" when the process shares our PID namespace (its pid means something
// here), "another" when not, "unknown" when it recorded none.
const char* namespace_of(std::uint64_t pid_namespace) {
  if (pid_namespace == 0) return "unknown";
  return pid_namespace == sys::pid_namespace_id() ? "this" : "another";
}

const char* state_name(SlotState state) {
  switch (state) {
    case SlotState::Free: return "free";
    case SlotState::Claiming: return "claiming";
    case SlotState::Live: return "attached";
    case SlotState::Reaping: return "reaping";
  }
  return "?";
}

std::string bytes(std::uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(n);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", value, units[unit]);
  return text;
}

json holder_json(const LockHolder& holder) {
  if (holder.tid == 0 && !holder.owner_died) return json{{"held", false}};
  json j{{"held", holder.tid != 0},
         {"pid", holder.pid},
         {"tid", holder.tid},
         {"owner_died", holder.owner_died},
         {"pid_namespace", holder.pid_namespace},
         {"namespace", namespace_of(holder.pid_namespace)},
         {"description", to_string(holder)}};
  if (holder.tid != 0) {
    LockHolder::Liveness liveness = holder.liveness();
    j["holder_state"] = to_string(liveness);
    j["holder_alive"] = liveness != LockHolder::Liveness::Dead;
  }
  return j;
}

struct Facts {
  json processes = json::array();
  std::size_t alive = 0;
  std::size_t dead = 0;
  std::optional<HeapStats> heap;
};

Facts gather(const Segment& segment, bool with_heap_figures) {
  Facts facts;
  const ProcessRegistry& registry = segment.registry();
  for (const SlotInfo& slot : registry.slots()) {
    (slot.alive ? facts.alive : facts.dead)++;
    facts.processes.push_back({{"slot", slot.index},
                               {"pid", slot.pid},
                               {"pid_namespace", slot.pid_namespace},
                               {"namespace", namespace_of(slot.pid_namespace)},
                               {"state", state_name(slot.state)},
                               {"alive", slot.alive},
                               {"attached_ns", slot.attached_ns}});
  }
  const SegmentLayout& layout = segment.layout();
  if (with_heap_figures && layout.allocator.size != 0) {
    HeapAudit audit =
        Heap::audit_offline(segment.base(), segment.mapped_size(), layout.allocator.offset,
                            layout.allocator.size, registry.view());
    facts.heap = audit.stats;
  }
  return facts;
}

json stats_json(const HeapStats& s) {
  return {{"capacity", s.capacity}, {"free", s.free},
          {"live", s.live},         {"cached", s.cached},
          {"metadata", s.metadata}, {"published", s.published},
          {"reserved", s.reserved}, {"live_count", s.live_count},
          {"blocks", s.blocks},     {"free_blocks", s.free_blocks},
          {"spans", s.spans},       {"largest_free", s.largest_free}};
}

// Strings put in JSON went through printable(); replacing any invalid UTF-8
// left anyway keeps dump() from throwing after a command has acted.
void print_json(const json& j) {
  std::printf("%s\n", j.dump(2, ' ', false, json::error_handler_t::replace).c_str());
}

// Another process may truncate a segment while we read it through our
// mapping: the pages past its new end then fault with SIGBUS, anywhere in the
// reading. A command on one segment ends as with any Error of kind Truncated,
// with a message made before the command starts (a signal handler may not
// build one). ls reads every segment in /dev/shm, other programs' too, and one
// that shrinks must not end the listing: there the handler puts zeros over the
// faulting page (bytes the readers validate like any other hostile ones),
// notes it, and the reading goes on; the row then says the segment shrank.
std::string g_truncated_output;
int g_truncated_fd = STDERR_FILENO;
bool g_zeros_on_sigbus = false;
std::size_t g_page_size = 0;
volatile std::sig_atomic_t g_shrank_while_read = 0;

void on_sigbus(int /*signal*/, siginfo_t* info, void* /*context*/) {
  if (g_zeros_on_sigbus) {
    auto* address = static_cast<char*>(info->si_addr);
    void* page = address - reinterpret_cast<std::uintptr_t>(address) % g_page_size;
    if (sys::map_zeros_over(page, g_page_size)) {
      g_shrank_while_read = 1;
      return;
    }
  }
  (void)sys::write_all(g_truncated_fd, g_truncated_output);
  sys::exit_now(kError);
}

void end_with_truncated_on_sigbus(const std::string& what, bool as_json) {
  const Error error(ErrorKind::Truncated, what, "read", "it shrank while shmctl read it");
  if (as_json) {
    g_truncated_output =
        json{{"error", printable(error.what())}, {"kind", std::string(to_string(error.kind()))}}
            .dump(2, ' ', false, json::error_handler_t::replace) +
        "\n";
    g_truncated_fd = STDOUT_FILENO;
  } else {
    g_truncated_output = "shmctl: " + printable(error.what()) + "\n";
    g_truncated_fd = STDERR_FILENO;
  }
  g_page_size = sys::page_size();
  sys::set_signal_handler(SIGBUS, &on_sigbus, 0);
}

int command_ls(bool as_json) {
  json rows = json::array();
  uid_t self = sys::geteuid();
  g_zeros_on_sigbus = true;
  for (const std::string& name : sys::list_shm_names()) {
    std::optional<struct stat> st = sys::stat_path("/dev/shm" + name);
    if (!st || st->st_uid != self) continue;
    json row{{"name", printable(name)}, {"size", static_cast<std::uint64_t>(st->st_size)}};
    g_shrank_while_read = 0;
    try {
      Segment segment = open_read_only(name);
      Facts facts = gather(segment, true);
      row["shmutils"] = true;
      row["processes_alive"] = facts.alive;
      row["processes_dead"] = facts.dead;
      if (facts.heap) row["bytes_used"] = facts.heap->live;
    } catch (const Error& e) {
      row["shmutils"] = false;
      row["why"] = std::string(to_string(e.kind()));
    }
    if (g_shrank_while_read != 0) {  // what was read past the new end was zeros: drop it
      row = json{{"name", row["name"]},
                 {"size", row["size"]},
                 {"shmutils", false},
                 {"why", std::string(to_string(ErrorKind::Truncated))}};
    }
    rows.push_back(row);
  }
  g_zeros_on_sigbus = false;
  if (as_json) {
    print_json(rows);
    return kOk;
  }
  if (rows.empty()) {
    std::printf("no shared-memory objects of this user in /dev/shm\n");
    return kOk;
  }
  std::printf("%-32s %10s %7s %6s %12s\n", "NAME", "SIZE", "ALIVE", "DEAD", "USED");
  for (const json& row : rows) {
    if (!row["shmutils"].get<bool>()) {
      std::printf("%-32s %10s  (not readable as a shmutils segment: %s)\n",
                  row["name"].get<std::string>().c_str(),
                  bytes(row["size"].get<std::uint64_t>()).c_str(),
                  row["why"].get<std::string>().c_str());
      continue;
    }
    std::string used = row.contains("bytes_used") ? bytes(row["bytes_used"].get<std::uint64_t>())
                                                  : std::string("no heap");
    std::printf("%-32s %10s %7zu %6zu %12s\n", row["name"].get<std::string>().c_str(),
                bytes(row["size"].get<std::uint64_t>()).c_str(),
                row["processes_alive"].get<std::size_t>(), row["processes_dead"].get<std::size_t>(),
                used.c_str());
  }
  return kOk;
}

// What inspect reports of a segment, as JSON: the header, the processes, the
// heap's figures, named objects and lock holders.
json inspect_json(const Segment& segment, const Facts& facts) {
  const SegmentHeader& h = segment.header();
  const SegmentLayout& layout = segment.layout();
  json j{{"name", printable(segment.name())},  {"uuid", segment.uuid().to_string()},
         {"layout_version", h.layout_version}, {"size", segment.size()},
         {"creator_pid", h.creator_pid},       {"created_realtime_ns", h.created_realtime_ns},
         {"processes", facts.processes},       {"processes_alive", facts.alive},
         {"processes_dead", facts.dead}};
  json locks = json::object();
  if (layout.allocator.size != 0) {
    j["heap"] = stats_json(*facts.heap);
    SegmentInspection inspection = inspect(segment);
    for (const InspectedLock& lock : inspection.locks) locks[lock.name] = holder_json(lock.holder);
    json named = json::array();
    for (const InspectedObject& object : inspection.named_objects) {
      named.push_back({{"name", printable(object.name)},
                       {"offset", object.offset},
                       {"size", object.size},
                       {"type", printable(object.type)},
                       {"ready", object.ready}});
    }
    j["named_objects"] = named;
  }
  j["locks"] = locks;
  return j;
}

// The same as text, for a person.
void print_inspection(const Segment& segment, const Facts& facts, const json& j) {
  const SegmentHeader& h = segment.header();
  const json& locks = j["locks"];
  std::printf("segment %s  (layout %u, uuid %s)\n", printable(segment.name()).c_str(),
              h.layout_version, segment.uuid().to_string().c_str());
  std::time_t created = static_cast<std::time_t>(h.created_realtime_ns / 1'000'000'000ULL);
  char when[64];
  std::tm local{};
  ::localtime_r(&created, &local);
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &local);
  std::printf("  size %s, created %s by pid %d\n", bytes(segment.size()).c_str(), when,
              h.creator_pid);
  std::printf("  processes: %zu alive, %zu dead%s\n", facts.alive, facts.dead,
              facts.dead != 0 ? "  (shmctl reap reclaims the dead ones)" : "");
  for (const json& p : facts.processes) {
    std::string where;
    if (p["namespace"].get<std::string>() == "another") {
      where = "  (in PID namespace " + std::to_string(p["pid_namespace"].get<std::uint64_t>()) +
              ": its pid is not ours)";
    }
    std::printf("    slot %-4u pid %-8d %-9s %s%s\n", p["slot"].get<unsigned>(),
                p["pid"].get<int>(), p["state"].get<std::string>().c_str(),
                p["alive"].get<bool>() ? "alive" : "DEAD", where.c_str());
  }
  if (facts.heap) {
    const HeapStats& s = *facts.heap;
    std::printf("  heap: capacity %s; live %s in %llu allocations (published %s, reserved %s);\n",
                bytes(s.capacity).c_str(), bytes(s.live).c_str(),
                static_cast<unsigned long long>(s.live_count), bytes(s.published).c_str(),
                bytes(s.reserved).c_str());
    std::printf("        free %s (largest block %s), cached %s, metadata %s; %llu spans\n",
                bytes(s.free).c_str(), bytes(s.largest_free).c_str(), bytes(s.cached).c_str(),
                bytes(s.metadata).c_str(), static_cast<unsigned long long>(s.spans));
    std::printf("  named objects:%s\n", j["named_objects"].empty() ? " none" : "");
    for (const json& n : j["named_objects"]) {
      std::printf("    %-24s %-10s at %llu  %s\n", n["name"].get<std::string>().c_str(),
                  bytes(n["size"].get<std::uint64_t>()).c_str(),
                  static_cast<unsigned long long>(n["offset"].get<std::uint64_t>()),
                  n["type"].get<std::string>().c_str());
    }
  } else {
    std::printf("  no heap (created without SegmentOptions::heap)\n");
  }
  std::vector<std::string> held;
  for (const auto& [lock, holder] : locks.items()) {
    if (holder["held"].get<bool>() || holder.value("owner_died", false)) held.push_back(lock);
  }
  std::printf("  locks held:%s\n", held.empty() ? " none" : "");
  for (const std::string& lock : held) {
    const json& holder = locks[lock];
    std::printf("    %-12s %s%s\n", lock.c_str(), holder.value("description", "").c_str(),
                holder.value("holder_alive", true) ? "" : " (dead: the next holder repairs)");
  }
}

int command_inspect(const std::string& name, bool as_json) {
  Segment segment = open_read_only(name);
  Facts facts = gather(segment, true);
  json j = inspect_json(segment, facts);
  if (as_json) {
    print_json(j);
  } else {
    print_inspection(segment, facts, j);
  }
  return kOk;
}

int command_audit(const std::string& name, bool as_json, bool live) {
  std::optional<Segment> segment;
  HeapAudit audit;
  if (live) {
    segment.emplace(Segment::open(name, Access::ReadWrite, tool_options()));
    audit = segment->audit(static_cast<unsigned>(g_timeout.count()));
  } else {
    segment.emplace(open_read_only(name));
    audit = segment->audit_offline();
  }
  if (as_json) {
    print_json({{"name", printable(segment->name())},
                {"ok", audit.ok()},
                {"complete", audit.complete},
                {"mode", live ? "live" : "offline"},
                {"problems", audit.problems},
                {"notes", audit.notes},
                {"heap", stats_json(audit.stats)}});
  } else {
    std::printf("%s: %s (%s audit)\n", printable(segment->name()).c_str(),
                audit.ok() ? "healthy" : "PROBLEMS FOUND", live ? "live" : "offline");
    for (const std::string& p : audit.problems) std::printf("  problem: %s\n", p.c_str());
    for (const std::string& n : audit.notes) std::printf("  note: %s\n", n.c_str());
    const HeapStats& s = audit.stats;
    std::printf("  free %llu + live %llu + cached %llu + metadata %llu = %llu of %llu bytes\n",
                static_cast<unsigned long long>(s.free), static_cast<unsigned long long>(s.live),
                static_cast<unsigned long long>(s.cached),
                static_cast<unsigned long long>(s.metadata),
                static_cast<unsigned long long>(s.free) + s.live + s.cached + s.metadata,
                static_cast<unsigned long long>(s.capacity));
  }
  return audit.ok() ? kOk : kFindings;
}

int command_reap(const std::string& name, bool as_json) {
  Segment segment = Segment::open(name, Access::ReadWrite, tool_options());
  std::vector<SlotInfo> dead = segment.registry().dead_slots();
  std::optional<HeapStats> before;
  if (segment.has_heap()) before = segment.heap().stats();
  std::size_t reaped = segment.reap_dead();
  json j{{"name", printable(segment.name())}, {"reaped", reaped}};
  json pids = json::array();
  for (const SlotInfo& slot : dead) pids.push_back(slot.pid);
  j["dead_pids"] = pids;
  if (before) {
    HeapStats after = segment.heap().stats();
    j["heap_cached_returned"] = before->cached - after.cached;
    j["heap_reserved_freed"] = before->reserved - after.reserved;
  }
  if (as_json) {
    print_json(j);
  } else {
    std::printf("%s: reaped %zu dead process slot%s", printable(segment.name()).c_str(), reaped,
                reaped == 1 ? "" : "s");
    if (before) {
      std::printf("; returned %s of cached objects and %s of unpublished blocks",
                  bytes(j["heap_cached_returned"].get<std::uint64_t>()).c_str(),
                  bytes(j["heap_reserved_freed"].get<std::uint64_t>()).c_str());
    }
    std::printf("\n");
  }
  return kOk;
}

// Why rm must not remove `name` without --force; empty when it may.
std::string rm_refusal(const std::string& name, std::size_t* alive) {
  try {
    SegmentOptions options = tool_options();
    options.allow_foreign_owner =
        false;  // another user's segment needs --force, --any-owner or not
    Segment segment = Segment::open(name, Access::ReadOnly, options);
    for (const SlotInfo& slot : segment.registry().slots()) *alive += slot.alive ? 1 : 0;
  } catch (const Error& e) {
    switch (e.kind()) {
      case ErrorKind::NotFound:
      case ErrorKind::InvalidName:
      case ErrorKind::NameTooLong: throw;
      // Left by a creator that died half way: removing it is the cleanup.
      case ErrorKind::NotInitialized: return {};
      case ErrorKind::PermissionDenied:
        return "it belongs to another user (" + std::string(e.what()) + ")";
      case ErrorKind::Timeout: return "its creator is still initializing it";
      default:
        return "it is not a shmutils segment this tool can read (" + std::string(e.what()) + ")";
    }
  }
  if (*alive != 0) {
    return std::to_string(*alive) + " live process" + (*alive == 1 ? " is" : "es are") +
           " attached; they keep using it after rm, but nobody new can find it";
  }
  return {};
}

int command_rm(const std::string& name, bool as_json, bool force) {
  std::size_t alive = 0;
  std::string refusal = rm_refusal(name, &alive);
  if (!refusal.empty() && !force) {
    if (as_json) {
      print_json({{"name", printable(name)}, {"removed", false}, {"why", printable(refusal)}});
    } else {
      std::fprintf(stderr, "shmctl: not removing %s: %s. Use --force to remove it anyway.\n",
                   printable(name).c_str(), printable(refusal).c_str());
    }
    return kFindings;
  }
  Segment::unlink(name);
  if (as_json) {
    print_json({{"name", printable(name)}, {"removed", true}, {"processes_alive", alive}});
  } else {
    std::printf("removed %s\n", printable(name).c_str());
  }
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "shmctl: inspect, audit and clean up shmutils shared-memory segments.\n"
      "NAME is a /dev/shm name with or without the leading '/'. Exit status: 0 ok,\n"
      "1 findings (audit problems, rm refused), 2 errors (no such segment, bad arguments)."};
  app.require_subcommand(1);
  bool as_json = false;
  app.add_flag("--json", as_json, "machine-readable output on stdout");
  std::string name;
  bool live = false;
  bool force = false;
  double timeout_s = 3.0;
  const CLI::Validator seconds_in_range = tools::finite_in_range(0.001, 3600.0);
  app.add_option("--timeout", timeout_s,
                 "seconds to wait, at most, for a segment still being created or for a lock of "
                 "the segment held by another process (stopped, in another container, or gone); "
                 "then exit 2 naming the holder")
      ->check(seconds_in_range)
      ->capture_default_str();

  auto* ls = app.add_subcommand(
      "ls", "this user's segments: size, attached processes (alive/dead), heap bytes in use");
  auto* inspect = app.add_subcommand(
      "inspect", "one segment: header, processes, heap figures, lock holders, named objects");
  inspect->add_option("NAME", name, "segment name")->required();
  auto* audit =
      app.add_subcommand("audit", "check every heap invariant; exit 1 when something is wrong");
  audit->add_option("NAME", name, "segment name")->required();
  audit->add_flag("--live", live,
                  "freeze the heap (take its locks) while processes use it, instead of reading "
                  "it as it lies");
  auto* reap = app.add_subcommand(
      "reap", "reclaim the slots of dead processes: their heap caches and unpublished blocks");
  reap->add_option("NAME", name, "segment name")->required();
  auto* rm = app.add_subcommand("rm", "remove a segment's name (attached processes keep it)");
  rm->add_option("NAME", name, "segment name")->required();
  rm->add_flag("--force", force,
               "remove it even while live processes are attached, when another user owns it, "
               "when it is not a shmutils segment, or while its creator initializes it");
  app.add_flag("--any-owner", g_any_owner,
               "read segments that belong to another user too (inspect, audit, reap)");
  for (CLI::App* sub : {ls, inspect, audit, reap, rm}) {
    sub->add_flag("--json", as_json, "machine-readable output on stdout");
    sub->add_option("--timeout", timeout_s, "as the global --timeout")->check(seconds_in_range);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kOk : kError;
  }
  g_timeout = std::chrono::milliseconds(std::llround(timeout_s * 1000.0));
  end_with_truncated_on_sigbus(
      *ls ? std::string("a segment in /dev/shm") : "segment \"" + name + "\"", as_json);
  try {
    if (*ls) return command_ls(as_json);
    if (*inspect) return command_inspect(name, as_json);
    if (*audit) return command_audit(name, as_json, live);
    if (*reap) return command_reap(name, as_json);
    if (*rm) return command_rm(name, as_json, force);
  } catch (const Error& e) {
    if (as_json) {
      print_json({{"error", printable(e.what())}, {"kind", std::string(to_string(e.kind()))}});
    } else {
      std::fprintf(stderr, "shmctl: %s%s\n", printable(e.what()).c_str(),
                   e.kind() == ErrorKind::PermissionDenied && !g_any_owner
                       ? "\nshmctl: --any-owner reads a segment of another user anyway"
                       : "");
    }
    return kError;
  }
  return kError;
}
