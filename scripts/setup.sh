#!/usr/bin/env bash
# Installs the Debian packages building and running seedbatch need (the bundled mock
# API for the demo included), then builds into build/. Safe to run more than once.
# The test suite's own tools are installed by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/apt-install.sh \
  build-essential cmake pkg-config ca-certificates \
  libuv1-dev libcurl4-openssl-dev libcjson-dev libyaml-dev libsqlite3-dev libcsv-dev libunistring-dev \
  libssl-dev libstb-dev libwebp-dev libtiff-dev zlib1g-dev libmimalloc-dev \
  libmicrohttpd-dev

BUILD_DIR="${BUILD_DIR:-build}"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" ${CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j"$(nproc)"
