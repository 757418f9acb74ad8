#!/usr/bin/env bash
# Fuzzes with libFuzzer for a bounded time each (clang from Debian; installed
# when missing):
#   segment        arbitrary bytes as a segment, opened and audited offline;
#                  seeds are real segments written by shmutils_fuzz_corpus.
#   hostile_peer   a valid live segment, fuzzer-chosen writes into it, then a
#                  victim process opens and uses it (lock, allocate, free,
#                  find, audit, reap) in a child with a deadline.
# A crash, a sanitizer report or a hang fails the run and leaves the input in
# build/fuzz/findings/ for replay, e.g.
#   build/fuzz/fuzz/shmutils_hostile_peer_fuzzer build/fuzz/findings/crash-...
#
#   scripts/fuzz.sh [SECONDS]     default 60, for each target
set -euo pipefail
seconds=${1:-60}
cd "$(dirname "$0")/.."

packages=(clang libclang-rt-14-dev)
scripts/install-packages.sh "${packages[@]}"

echo "fuzz: building the targets (clang, ASan + UBSan)"
cmake --preset fuzz >/dev/null
cmake --build build/fuzz --target shmutils_segment_fuzzer shmutils_hostile_peer_fuzzer \
  shmutils_fuzz_corpus -j "$(nproc)" -- --no-print-directory >/dev/null
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
mkdir -p "$corpus/segment" "$corpus/hostile_peer" build/fuzz/findings
build/fuzz/fuzz/shmutils_fuzz_corpus "$corpus/segment"
for target in segment hostile_peer; do
  echo "fuzz: $target for ${seconds} s"
  build/fuzz/fuzz/shmutils_${target}_fuzzer -max_total_time="$seconds" -timeout=30 \
    -rss_limit_mb=2048 -max_len=300000 -print_final_stats=1 \
    -artifact_prefix=build/fuzz/findings/ "$corpus/$target" 2>&1 |
    grep -E '^(#[0-9]+ +DONE|Done|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written|hostile peer:)' || true
done
# libFuzzer exits non-zero on a finding; pipefail would hide that behind grep.
if compgen -G "build/fuzz/findings/*" >/dev/null; then
  echo "fuzz: findings in build/fuzz/findings/" >&2
  exit 1
fi
echo "fuzz: no crash, no hang in ${seconds} s per target"
