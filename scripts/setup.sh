#!/usr/bin/env bash
# Install every system package seedbatch needs to build, test and benchmark,
# then build into build/. Safe to run more than once.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  build-essential cmake pkg-config git ca-certificates curl sqlite3 openssl
  libuv1-dev libcurl4-openssl-dev libcjson-dev libyaml-dev libsqlite3-dev libcsv-dev
  libssl-dev libmicrohttpd-dev libstb-dev libwebp-dev libtiff-dev zlib1g-dev libmimalloc-dev
  clang libclang-rt-14-dev python3 python3-aiohttp python3-yaml fiu-utils faketime time valgrind nghttp2-proxy strace procps
  fusefat dosfstools
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

BUILD_DIR="${BUILD_DIR:-build}"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" ${CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j"$(nproc)"
