#!/usr/bin/env bash
# Runs the demo batch (jobs/demo.yaml) end to end against the bundled mock API:
# no key or network needed. Starts the mock on a free loopback port, validates,
# shows the plan and cost quote, runs the batch, and shows status, results and the
# review page (report.html).
# Outputs land in jobs/demo.out/ (removed first, so each demo starts afresh).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/seedbatch ] && [ -x build/mockapi ] || bash scripts/setup.sh
tmp=$(mktemp -d)
build/mockapi --port-file "$tmp/port" --latency 1500 --seed 1 --fault any:503:0.1 >"$tmp/mock.log" 2>&1 &
mock=$!
trap 'kill $mock 2>/dev/null; wait $mock 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 200); do [ -s "$tmp/port" ] && break; sleep 0.02; done
export ATLASCLOUD_BASE_URL="http://127.0.0.1:$(cat "$tmp/port")/api/v1"
export ATLASCLOUD_API_KEY="test-key"
rm -rf jobs/demo.out
echo "== mock API at $ATLASCLOUD_BASE_URL (1.5 s per prediction, 10% of calls answer 503)"
echo "== seedbatch validate jobs/demo.yaml"
build/seedbatch validate jobs/demo.yaml
echo "== seedbatch run --dry-run jobs/demo.yaml"
build/seedbatch run --dry-run jobs/demo.yaml
echo "== seedbatch run jobs/demo.yaml"
build/seedbatch run jobs/demo.yaml
echo "== seedbatch status jobs/demo.yaml"
build/seedbatch status jobs/demo.yaml
echo "== jobs/demo.out/"
ls jobs/demo.out
echo "== first line of jobs/demo.out/results.jsonl"
head -1 jobs/demo.out/results.jsonl
echo "== the review page: open jobs/demo.out/report.html in a browser"
grep -c 'data-job=' jobs/demo.out/report.html | sed 's/$/ job cards/'
