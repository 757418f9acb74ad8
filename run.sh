#!/usr/bin/env bash
# Quick start, command 1: installs what is missing, builds, and runs the main
# job with its defaults. Arguments are passed on to the main job (try --help).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh dev
exec build/dev/tools/shmutils-counter "$@"
