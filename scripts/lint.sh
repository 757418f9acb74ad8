#!/usr/bin/env bash
# Formatting and static analysis: clang-format must have nothing to change and
# clang-tidy (.clang-tidy) nothing to say about the library sources.
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
mapfile -t library < <(git ls-files 'shm/src/*.cpp' 'framework/src/*.cpp' 'fixtures/src/*.cpp' 'properties/src/*.cpp' 'tools/*.cpp')
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
