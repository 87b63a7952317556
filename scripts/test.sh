#!/usr/bin/env bash
# Runs the whole test suite: installs and builds (scripts/setup.sh), runs the
# suite under ASan+UBSan, fuzzes the manifest, API answer, image and catalogue-row parsers
# briefly (the four at once, for their set time), then runs on the regular build what
# is not the same there (all but the fault and protocol tests). Ends with ctest's summary line.
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
  bash-completion dpkg-dev file
# Chromium (the review page's test, in the regular suite) is the largest by far: fetched and
# installed while the sanitizer suite runs, which mostly waits on the mock's simulated work.
apt_log=$(mktemp)
bash scripts/apt-install.sh chromium python3-pil python3-websocket >"$apt_log" 2>&1 &
apt_pid=$!
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
cmake --build build-fuzz -j"$JOBS" --target fuzz_manifest fuzz_provider fuzz_image fuzz_rows >/dev/null
ctest --test-dir build-fuzz --output-on-failure -j4 -R '^fuzz\..*_run$'

echo "== regular build"
if ! wait "$apt_pid"; then
  cat "$apt_log"
  echo "installing chromium for the review page's test failed" >&2
  exit 1
fi
rm -f "$apt_log"
# The mock's own test ran under the sanitizers above: it tests the mock, not this build; so
# did the fault and protocol tests labelled sanitized_run_enough (tests/CMakeLists.txt).
ctest --test-dir build --output-on-failure -j"$TEST_JOBS" -E '^mockapi\.' -LE sanitized_run_enough
