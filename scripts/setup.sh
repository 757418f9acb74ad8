#!/usr/bin/env bash
# Installs what the build needs from Debian's packages (only what is missing,
# quietly when all is present), then configures and builds one CMake preset.
#
#   scripts/setup.sh [PRESET]     PRESET: dev (default), asan, release
set -euo pipefail

preset=${1:-dev}
cd "$(dirname "$0")/.."

# Debian package names; libunwind-dev by name (it conflicts with libunwind-14-dev).
packages=(
  build-essential cmake git
  googletest libgtest-dev libgmock-dev
  librapidcheck-dev
  libunwind-dev
  libbenchmark-dev
  libcli11-dev
  nlohmann-json3-dev
  libboost-dev
)

echo "setup: checking the Debian packages the build needs"
scripts/install-packages.sh "${packages[@]}"

echo "setup: configuring and building the $preset preset (a few minutes on a fresh machine)"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$(nproc)" -- --no-print-directory >/dev/null 2>build-"$preset".log \
  || { cat build-"$preset".log >&2; echo "setup: build of preset $preset failed" >&2; exit 1; }
rm -f build-"$preset".log
echo "setup: $preset is built"
