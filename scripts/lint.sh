#!/usr/bin/env bash
# Formatting and static analysis: clang-format must have nothing to change,
# no OS call may bypass shmutils::sys, and clang-tidy (.clang-tidy) must have
# nothing to say about the library sources (and the tests: --tests for all).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in clang-format clang-tidy; do
  if ! command -v "$tool" >/dev/null; then
    echo "lint: installing $tool"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
  fi
done
[[ -f build/dev/compile_commands.json ]] || scripts/setup.sh dev
mapfile -t sources < <(git ls-files '*.cpp' '*.hpp')
clang-format --dry-run --Werror "${sources[@]}"
# Every OS call goes through shmutils::sys (shm/src/sys.cpp): a direct call
# elsewhere in the library, the tools or the benchmarks is an error.
os_calls='read|write|open|close|kill|_exit|raise|signal|sigaction|ptrace|munmap|mmap|pread|pwrite|sysconf|waitpid|fork|pipe|pipe2|dup|dup2|fcntl|poll|getpid|getppid|gettid|syscall|prctl|ftruncate|fstat|stat|lstat|unlink|pthread_atfork|sigprocmask|pthread_sigmask|process_vm_readv|madvise|mprotect|sched_yield|readlink|access|umask|nanosleep|clock_gettime|shm_open|shm_unlink|flock|opendir|readdir|socketpair|sendmsg|recvmsg|execv|execve|posix_spawn|setsid|getuid|geteuid|memfd_create|isatty|lseek|chmod|fchmod|rename|setpriority|getrlimit|setrlimit|unshare|clone|mount|sigaltstack'
if direct=$(git grep -nE "(^|[^:[:alnum:]_])::($os_calls)\(" -- 'shm/*.cpp' 'shm/*.hpp' \
  'framework/*.cpp' 'framework/*.hpp' 'fixtures/*.cpp' 'fixtures/*.hpp' 'properties/*.cpp' \
  'properties/*.hpp' 'tools/*.cpp' 'tools/*.hpp' 'bench/*.cpp' ':!shm/src/sys.cpp'); then
  echo "$direct" >&2
  echo "lint: OS calls outside shmutils::sys (add a function to shm/src/sys.cpp)" >&2
  exit 1
fi
# shmutils::sys is not installed: no installed header may include it.
if leaks=$(git grep -n 'shmutils/shm/detail/sys.hpp' -- '*/include/*' ':!shm/include/shmutils/shm/detail/*'); then
  echo "$leaks" >&2
  echo "lint: an installed header includes detail/sys.hpp, which is not installed" >&2
  exit 1
fi
# The library and the tools always (with shm/src/*.hpp and the other private
# headers, through HeaderFilterRegex); the tests (and tests/*.hpp) with
# --tests, or else those the newest commit changed: all of them take longer
# than the rest of CI allows on two cores, and each is linted as it lands.
# offset_ptr_test.cpp is left to g++: clang 14's ranges cannot take
# libstdc++ 12's subrange of offset_ptr.
mapfile -t library < <(git ls-files 'shm/src/*.cpp' 'framework/src/*.cpp' 'fixtures/src/*.cpp' \
  'properties/src/*.cpp' 'tools/*.cpp')
if [[ "${1:-}" == "--tests" ]]; then
  mapfile -t tests < <(git ls-files 'tests/*.cpp' ':!tests/offset_ptr_test.cpp')
else
  mapfile -t tests < <(git diff --name-only --diff-filter=d HEAD~1 HEAD -- 'tests/*.cpp' \
    ':!tests/offset_ptr_test.cpp' 2>/dev/null || true)
fi
library+=("${tests[@]}")
# One clang-tidy per core, a few files each: as long as the slowest share, not the sum.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
jobs=$(nproc)
echo "lint: clang-format clean; clang-tidy on ${#library[@]} files, $jobs at a time"
if ! printf '%s\0' "${library[@]}" |
  xargs -0 -P "$jobs" -n 3 clang-tidy -p build/dev --quiet --warnings-as-errors='*' >"$log" 2>&1; then
  grep -v "warnings generated" "$log" >&2
  echo "lint: clang-tidy found problems" >&2
  exit 1
fi
echo "lint: clean"
