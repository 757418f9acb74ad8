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

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$(nproc)" -- --no-print-directory >/dev/null 2>build-"$preset".log \
  || { cat build-"$preset".log >&2; echo "setup: build of preset $preset failed" >&2; exit 1; }
rm -f build-"$preset".log
