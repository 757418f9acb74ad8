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
if ! clang-tidy -p build/dev --quiet --warnings-as-errors='*' "${library[@]}" >lint.log 2>&1; then
  grep -v "warnings generated" lint.log >&2
  rm -f lint.log
  echo "lint: clang-tidy found problems" >&2
  exit 1
fi
rm -f lint.log
echo "lint: clean"
