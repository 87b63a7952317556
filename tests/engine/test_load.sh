#!/usr/bin/env bash
# Load: 10,000 jobs at concurrency 256 (as the benchmark runs them), every job done exactly
# once: one submission per job, no duplicate, no refusal, every output written, the state
# and results complete, the connections reused.
. "$(dirname "$0")/../lib.sh"
export ATLASCLOUD_API_KEY=load-key
W=$(mktemp -d /dev/shm/sbload.XXXXXX 2>/dev/null || mktemp -d /tmp/sbload.XXXXXX)
trap 'cleanup; rm -rf "$W"' EXIT
python3 - "$W/m.yaml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\n")
    f.write("output_dir: out\ndefaults: {max_images: 1}\n")
    f.write("limits: {concurrency: 256, requests_per_second: 0, poll_interval: 100ms}\njobs:\n")
    for i in range(10000):
        f.write(f'  - {{id: j{i}, prompt: "load {i}", images: ["http://127.0.0.1/in/{i}.jpg"]}}\n')
PY
start_mock --key load-key --no-variants
export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"
run /usr/bin/time -f "%M" -o "$T/rss" "$SEEDBATCH" run "$W/m.yaml"; expect_rc 0 "10,000 jobs"
expect_eq "$(stat_of submissions)" 10000 "one submission per job"
expect_eq "$(stat_of distinct_submissions)" 10000 "every job submitted"
expect_eq "$(stat_of duplicate_submissions)" 0 "no duplicate"
expect_eq "$(stat_of refused_rate)" 0 "no refusal"
expect_eq "$(grep -c '"status":"succeeded"' "$W/out/results.jsonl")" 10000 "every job succeeded"
expect_eq "$(ls "$W/out" | grep -c '_1\.jpg$')" 10000 "every output on disk"
expect_eq "$(sqlite3 "$W/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE state='succeeded'")" 10000 "state complete"
echo "peak RSS at 10,000 jobs: $(cat "$T/rss") KiB"
# 30,000 transfers over connections kept alive: about one per transfer at once (at most
# 256, and the server closes none), plus one per stats call; not one per transfer.
conns=$(stat_of connections)
echo "connections at 10,000 jobs: $conns"
[ "$conns" -ge 8 ] && [ "$conns" -le 272 ] && pass || fail "connections: $conns (expected 8 to 272)"
stop_mock
finish
