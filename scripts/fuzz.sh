#!/usr/bin/env bash
# Fuzzes segment opening and the offline heap audit with libFuzzer for a
# bounded time (clang from Debian; installed when missing). Seeds are real
# segments written by shmutils_fuzz_corpus. A crash, a sanitizer report or a
# hang (an input taking over 10 s) fails the run and leaves the input in
# build/fuzz/findings/ for replay:  build/fuzz/fuzz/shmutils_segment_fuzzer FILE
#
#   scripts/fuzz.sh [SECONDS]     default 60
set -euo pipefail
seconds=${1:-60}
cd "$(dirname "$0")/.."

packages=(clang libclang-rt-14-dev)
scripts/install-packages.sh "${packages[@]}"

cmake --preset fuzz >/dev/null
cmake --build build/fuzz --target shmutils_segment_fuzzer shmutils_fuzz_corpus -j "$(nproc)" \
  -- --no-print-directory >/dev/null
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
build/fuzz/fuzz/shmutils_fuzz_corpus "$corpus"
mkdir -p build/fuzz/findings
build/fuzz/fuzz/shmutils_segment_fuzzer -max_total_time="$seconds" -timeout=10 \
  -rss_limit_mb=2048 -max_len=300000 -print_final_stats=1 \
  -artifact_prefix=build/fuzz/findings/ "$corpus" 2>&1 |
  grep -E '^(#[0-9]+ +DONE|Done|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)' || true
# libFuzzer exits non-zero on a finding; pipefail would hide that behind grep.
if compgen -G "build/fuzz/findings/*" >/dev/null; then
  echo "fuzz: findings in build/fuzz/findings/" >&2
  exit 1
fi
echo "fuzz: no crash, no hang in ${seconds} s"
