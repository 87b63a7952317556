#!/usr/bin/env bash
# Crash safety: kill -9 at random moments, many times, then let the run finish.
# Nothing is lost, nothing is paid twice unless flagged, no final name holds a
# partial file, and the state database stays intact. A second signal exits at once.
. "$(dirname "$0")/../lib.sh"

KEY="sk-crash-$$"
export ATLASCLOUD_API_KEY="$KEY"
N=40
D=$T/b
mkdir -p "$D/img"
"$GEN_IMAGE" png 48 48 "$D/img/logo.png" 99
for i in $(seq 1 $N); do "$GEN_IMAGE" jpeg 64 80 "$D/img/p$i.jpg" "$i"; done
cat > "$D/m.yaml" <<EOF2
version: 1
provider: atlascloud
model: bytedance/seedream-v5.0-lite/edit-sequential
output_dir: out
defaults: {max_images: 3, output_format: jpeg}
limits: {concurrency: 6, requests_per_second: 0, poll_interval: 150ms}
jobs:
  - foreach: "img/p*.jpg"
    id: "job-{stem}"
    prompt: "Edit {name}"
    images: ["{path}", img/logo.png]
EOF2
start_mock --key "$KEY" --latency 400 --seed 3 --fault any:503:0.05 --fault download:slow:0.3 --slow-ms 150
export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"

kills=0
for round in $(seq 1 15); do
    "$SEEDBATCH" run --quiet "$D/m.yaml" >/dev/null 2>"$T/err.$round" & pid=$!
    sleep "0.$(( RANDOM % 4 ))$(( RANDOM % 10 ))"
    if kill -9 $pid 2>/dev/null; then kills=$((kills + 1)); fi
    wait $pid 2>/dev/null
    # Read-only, and only once there is one: the sqlite3 shell makes an empty file where there
    # is none (a kill before the run made its state), which seedbatch rightly refuses as a state.
    ic=""
    [ -e "$D/out/.seedbatch/state.db" ] &&
        ic=$(sqlite3 -readonly "$D/out/.seedbatch/state.db" "PRAGMA integrity_check" 2>/dev/null)
    [ -z "$ic" ] || [ "$ic" = ok ] || fail "integrity_check after kill $round: $ic"
    # Every final name holds a complete image (a .part is the only partial file allowed).
    python3 - "$D/out" <<'PY' || fail "truncated file under a final name after kill $round"
import glob, sys
bad = [f for f in glob.glob(sys.argv[1] + "/job-*_*.jpg")
       if (lambda b: not (b[:2] == b"\xff\xd8" and b[-2:] == b"\xff\xd9"))(open(f, "rb").read())]
print("\n".join(bad), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
done
[ "$kills" -ge 8 ] && pass || fail "only $kills of 15 runs were killed mid-way"
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "the run finishes after $kills kills"
R=$D/out/results.jsonl
expect_eq "$(grep -c '"status":"succeeded"' "$R")" $N "every job succeeded"
expect_eq "$(ls "$D/out" | grep -c '^job-p[0-9]*_[123]\.jpg$')" $((N * 3)) "every output on disk"
expect_eq "$(ls -a "$D/out" | grep -c '\.part$')" 0 "no .part file left"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "PRAGMA integrity_check")" ok "integrity_check"
check_outputs "$R" "$D/out"
dups=$(stat_of duplicate_submissions); flagged=$(grep -c '"possible_duplicate":true' "$R")
expect_eq "$(unflagged_duplicates "$R")" 0 "duplicate submissions only for jobs flagged possible_duplicate"
subs=$(stat_of submissions)
expect_eq "$(stat_of distinct_submissions)" $N "each job submitted (distinct bodies == jobs)"
echo "kills: $kills, submissions: $subs, duplicates: $dups, flagged: $flagged"
calls=$(stat_of api_requests)
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "rerun of the finished batch"
expect_eq "$(stat_of api_requests)" "$calls" "nothing sent on rerun"
stop_mock

# A second signal exits at once, leaving a consistent state that resumes.
D2=$T/c; mkdir -p "$D2"; cp -r "$D/img" "$D/m.yaml" "$D2/"
start_mock --key "$KEY" --latency 20000 --fault poll:slow:1 --slow-ms 15000
export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"
# Ctrl-C twice at a terminal. A background job of a script starts with SIGINT ignored,
# which seedbatch leaves so (test_run 9e): the run is started with it at its default.
python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
    "$SEEDBATCH" run "$D2/m.yaml" >/dev/null 2>"$T/err2" & pid=$!
for _ in $(seq 1 100); do [ "$(stat_of requests.poll)" -ge 6 ] && break; sleep 0.05; done
# A slow answer keeps the first signal's grace period busy; the second ends it at once
# (a second after the first: the same signal sooner is the same stop delivered twice).
kill -INT $pid; sleep 1.2; kill -INT $pid
S=$(date +%s%N); wait $pid; RC=$?; E=$(( ($(date +%s%N) - S) / 1000000 ))
expect_rc 75 "second signal"
[ "$E" -lt 2000 ] && pass || fail "second signal took ${E}ms"
expect_in "$T/err2" "second signal: exiting now" "second signal message"
expect_eq "$(sqlite3 "$D2/out/.seedbatch/state.db" "PRAGMA integrity_check")" ok "integrity after second signal"
expect_eq "$(sqlite3 "$D2/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE prediction_id IS NOT NULL")" 6 "ids kept"
stop_mock

# A job writes four rows (submitting, running, downloading with its charge, succeeded).
# Killed while its outputs download, it is left downloading in the state with its charge
# in the ledger, and the next run downloads from the URLs it kept: no submit, no poll, no
# second charge.
D3=$T/d; mkdir -p "$D3"
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\noutput_dir: out\nlimits: {concurrency: 4, requests_per_second: 0, poll_interval: 100ms}\njobs:\n' > "$D3/m.yaml"
for i in 1 2 3; do printf '  - {id: d%d, prompt: "download %d", images: ["http://127.0.0.1/in/%d.jpg"]}\n' $i $i $i >> "$D3/m.yaml"; done
start_mock --key "$KEY"
export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"
run "$SEEDBATCH" run --debug "$D3/m.yaml"; expect_rc 0 "three jobs"
expect_in "$T/err" "state: " "state report"
expect_eq "$(grep -o '[0-9]* job rows written' "$T/err" | grep -o '^[0-9]*')" 12 "four row writes per job"
expect_eq "$(grep -c 'job d[123]: running -> downloading' "$T/err")" 3 "downloading written"
expect_eq "$(grep -c 'job d[123]: downloading -> succeeded' "$T/err")" 3 "then succeeded"
expect_eq "$(sqlite3 "$D3/out/.seedbatch/state.db" "SELECT count(*) || ',' || sum(images) FROM charges WHERE flagged=0")" \
    "3,3" "one charge per prediction"
stop_mock
rm -rf "$D3/out"
start_mock --key "$KEY" --fault download:slow:#3 --slow-ms 30000
export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"
"$SEEDBATCH" run --debug "$D3/m.yaml" >/dev/null 2>"$T/err3" & pid=$!
for _ in $(seq 1 200); do [ "$(grep -c 'running -> downloading' "$T/err3")" -ge 3 ] && break; sleep 0.05; done
sleep 0.3 # the commits in flight return
kill -9 $pid; wait $pid 2>/dev/null
expect_eq "$(grep -c 'running -> downloading' "$T/err3")" 3 "all three were downloading when killed"
expect_eq "$(sqlite3 "$D3/out/.seedbatch/state.db" "SELECT group_concat(state) FROM (SELECT state FROM jobs ORDER BY id)")" \
    "downloading,downloading,downloading" "left downloading in the state"
expect_eq "$(sqlite3 "$D3/out/.seedbatch/state.db" "SELECT count(*) FROM charges")" 3 "charged before the kill"
polls=$(stat_of requests.poll)
run "$SEEDBATCH" run "$D3/m.yaml"; expect_rc 0 "resume after a kill while downloading"
expect_eq "$(stat_of submissions)" 3 "not submitted again"
expect_eq "$(( $(stat_of requests.poll) - polls ))" 0 "downloaded from the URLs kept, not polled"
expect_eq "$(sqlite3 "$D3/out/.seedbatch/state.db" "SELECT count(*) || ',' || round(sum(cost), 3) FROM charges")" \
    "3,0.096" "no second charge on resume"
expect_in "$T/err" "spend \$0.10, \$0.00 of it in this run" "the summary's spend is the state's"
expect_eq "$(grep -c '"status":"succeeded"' "$D3/out/results.jsonl")" 3 "all succeeded"
check_outputs "$D3/out/results.jsonl" "$D3/out"
stop_mock

# A download that fails in a way worth retrying after a signal leaves its job for the next
# run: the job is not failed (its prediction is paid for), the next run downloads it,
# never resubmitting.
D4=$T/e; mkdir -p "$D4"
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\noutput_dir: out\nlimits: {concurrency: 2, requests_per_second: 0, poll_interval: 100ms}\njobs:\n  - {id: t1, prompt: "term", images: ["http://127.0.0.1/in/1.jpg"]}\n' > "$D4/m.yaml"
start_mock --key "$KEY" --fault download:slow:#1 --slow-ms 1500 --fault download:503:#1
export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"
"$SEEDBATCH" run --debug "$D4/m.yaml" >/dev/null 2>"$T/err4" & pid=$!
for _ in $(seq 1 200); do grep -q 'running -> downloading' "$T/err4" && break; sleep 0.05; done
kill -TERM $pid; wait $pid; RC=$?
expect_rc 75 "terminated while downloading"
expect_eq "$(stat_of faults.503)" 1 "the download answered 503 after the signal"
expect_not_in "$T/err4" "job t1 failed" "the job not failed"
expect_eq "$(sqlite3 "$D4/out/.seedbatch/state.db" "SELECT state || ',' || coalesce(error_kind, '-') FROM jobs")" \
    "downloading,-" "left downloading, with no error"
run "$SEEDBATCH" run "$D4/m.yaml"; expect_rc 0 "resume after the signal"
expect_eq "$(stat_of submissions)" 1 "not submitted again"
expect_eq "$(grep -c '"status":"succeeded"' "$D4/out/results.jsonl")" 1 "succeeded on resume"
check_outputs "$D4/out/results.jsonl" "$D4/out"
stop_mock

finish
