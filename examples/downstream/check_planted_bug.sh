#!/usr/bin/env bash
# The planted bug (the ring's repair skipped) must be caught by the property
# with a counterexample of at most 3 operations and exactly 1 kill, and the
# printed RC_PARAMS reproduce string must replay that same counterexample.
# Usage: check_planted_bug.sh <ring_tests_planted_bug>
set -euo pipefail
binary=$1
filter='RingProperty.*'

# The counterexample: the lines after "commands:" up to the first blank line.
counterexample() { awk '/^commands:$/ {found = 1; next} found && /^$/ {exit} found' <<<"$1"; }

if output=$("$binary" --gtest_filter="$filter" 2>&1); then
  echo "FAIL: the property passed although the ring's repair is skipped"
  exit 1
fi
commands=$(counterexample "$output")
operations=$(grep -c . <<<"$commands" || true)
kills=$(grep -c 'kill' <<<"$commands" || true)
echo "shrunk counterexample ($operations operations, $kills kill):"
echo "$commands"
echo "$output" | grep -A3 'the structure holds\|returned' | head -4 || true
if [[ $operations -lt 1 || $operations -gt 3 || $kills -ne 1 ]]; then
  echo "FAIL: wanted at most 3 operations and exactly 1 kill"
  echo "$output"
  exit 1
fi

reproduce=$(grep -o 'RC_PARAMS="reproduce=[^"]*"' <<<"$output" | head -1 | sed 's/^RC_PARAMS="//; s/"$//')
if [[ -z $reproduce ]]; then
  echo "FAIL: no reproduce string printed"
  exit 1
fi
if replay=$(RC_PARAMS="$reproduce" "$binary" --gtest_filter="$filter" 2>&1); then
  echo "FAIL: the reproduce string did not reproduce the failure"
  exit 1
fi
if [[ $(counterexample "$replay") != "$commands" ]]; then
  echo "FAIL: the replay found another counterexample:"
  counterexample "$replay"
  exit 1
fi
echo "replayed from RC_PARAMS=\"$reproduce\": same counterexample"
