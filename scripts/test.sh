#!/usr/bin/env bash
# Runs the whole test suite: installs and builds (scripts/setup.sh), runs the
# suite under ASan+UBSan, fuzzes the manifest, API answer and image parsers
# briefly (the three at once, for their set time), then runs the suite on the regular
# build. Ends with ctest's summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# What the tests use besides: the fuzzers' compiler, the Python peer and the independent
# server, fault injection (libfiu, faketime, a FAT image through FUSE), valgrind, an HTTP/2
# proxy, sqlite3 and openssl, tmux for the terminal, man and bash completion for the install,
# Chromium (driven over its DevTools protocol from Python, PIL for its screenshot) for the review page.
bash scripts/apt-install.sh \
  clang libclang-rt-14-dev python3 python3-aiohttp python3-yaml fiu-utils faketime time valgrind \
  nghttp2-proxy strace procps fusefat dosfstools sqlite3 openssl curl git tmux man-db groff-base \
  bash-completion dpkg-dev file chromium python3-pil python3-websocket
JOBS=$(nproc)
# The shell tests spend most of their time waiting on the mock's simulated processing:
# one more at a time than there are cores keeps the machine busy.
TEST_JOBS=$((JOBS + 1))

echo "== sanitizer build (address,undefined)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$JOBS" >/dev/null
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$TEST_JOBS"

echo "== fuzz build (clang, libFuzzer)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DFUZZ=ON -DSANITIZE=address,undefined >/dev/null
cmake --build build-fuzz -j"$JOBS" --target fuzz_manifest fuzz_provider fuzz_image >/dev/null
ctest --test-dir build-fuzz --output-on-failure -j3 -R '^fuzz\..*_run$'

echo "== regular build"
# The mock's own test ran under the sanitizers above: it tests the mock, not this build.
ctest --test-dir build --output-on-failure -j"$TEST_JOBS" -E '^mockapi\.'
