#!/usr/bin/env bash
# Quick start, command 2: installs what is missing, builds, and runs the whole
# test suite. Extra arguments go to ctest (e.g. -R Segment).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh dev
ctest --preset dev "$@"
