#!/usr/bin/env bash
# Runs the whole test suite: installs and builds (scripts/setup.sh), runs the
# suite under ASan+UBSan, fuzzes the manifest, API answer and image parsers
# briefly (the three at once, for their set time), then runs the suite on the regular
# build. Ends with ctest's summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
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
