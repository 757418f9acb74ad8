#!/usr/bin/env bash
# Quick start, command 1: installs what is missing, builds, and runs the main
# job with its defaults: shmtorture, the fault-injection harness, on every
# built-in scenario (about 20 s). Arguments go to shmtorture (try --help).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh dev
exec build/dev/tools/shmtorture "$@"
