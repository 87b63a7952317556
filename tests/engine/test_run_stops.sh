#!/usr/bin/env bash
# seedbatch run against the mock API, continued (test_run.sh has the first part): max_cost,
# auth, the lock, signals and how a run stops.
. "$(dirname "$0")/../lib.sh"

. "$(dirname "$0")/run_batch.sh"

# --- 6. max_cost: stops submitting, exit 4 ---
D=$T/cost; make_batch "$D" 5 "price_per_image: 0.5"
sed -i 's/requests_per_second: 0/requests_per_second: 0, max_cost: 2.0/' "$D/m.yaml"
start_mock --key "$KEY"; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 4 "max_cost stop"
expect_eq "$(stat_of submissions)" 2 "two jobs fit in the budget"
expect_eq "$(grep -c '"status":"pending"' "$D/out/results.jsonl")" 3 "the rest stay pending"
stop_mock

# --- 7. auth: wrong key and no balance abort with exit 3, state kept ---
D=$T/auth; make_batch "$D" 12
start_mock --key "$KEY" --key other-key; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 3 "wrong key"
[ "$(stat_of api_requests)" -eq 0 ] && [ "$(stat_of unauthorized)" -le 3 ] && pass || fail "wrong key: $(stat_of unauthorized) calls"
expect_in "$T/err" "the API refused the key" "auth message"
expect_not_in "$T/err" "$KEY" "key not in the message"
expect_eq "$(grep -c '"status":"pending"' "$D/out/results.jsonl")" 12 "jobs kept pending"
stop_mock
# A 401 that echoes the Authorization header it refused: the key is never shown, in
# text or JSON logs (with --debug too), nor kept in the state or results.
start_mock --key other-key --echo-auth; use_mock
for fmt in text json; do
    run "$SEEDBATCH" run --debug --log-format "$fmt" "$D/m.yaml"; expect_rc 3 "echoed key ($fmt)"
    expect_in "$T/err" "got Authorization: Bearer [redacted]" "echoed key ($fmt): the echo shown redacted"
    expect_not_in "$T/err" "$KEY" "echoed key ($fmt): not on stderr"
done
grep -rqF "$KEY" "$D/out" && fail "echoed key: found under the output directory" || pass
stop_mock
# A key file of two lines is named as such.
printf 'first-line\nsecond-line\n' > "$D/two.key"; chmod 600 "$D/two.key"
sed "s|^output_dir: out|output_dir: out\napi_key_file: two.key|" "$D/m.yaml" > "$D/k2.yaml"
run "$SEEDBATCH" validate "$D/k2.yaml"; expect_rc 2 "a two-line api_key_file"
expect_in "$T/err" "api_key_file $D/two.key holds more than one line" "the key file named"
start_mock --key "$KEY" --fault submit:402:1; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 3 "no balance"
n=$(stat_of requests.submit)
[ "$n" -ge 1 ] && [ "$n" -le 8 ] && pass || fail "402: $n submits; at most the 8 already in flight"
expect_eq "$(stat_of requests.poll)" 0 "402: nothing else started"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE state='pending'")" 12 "402: every job back to pending"
expect_not_in "$T/err" "a wrong path there" "402: no word of the path"
stop_mock
# Atlas answers a wrong URL path 401 as well: with a base URL set by hand (here with a
# wrong path), the message says so and names it.
start_mock --key "$KEY"; export ATLASCLOUD_BASE_URL="$MOCK_URL/api"
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 3 "base URL with a wrong path"
expect_in "$T/err" "ATLASCLOUD_BASE_URL is set to $MOCK_URL/api, and a wrong path there is answered 401 too: check it" "the base URL named"
expect_eq "$(stat_of submissions)" 0 "nothing submitted"
stop_mock
# A bare host (as Atlas's ComfyUI nodes take it), with or without its slash, gets /api/v1.
for host in "MOCK_URL" "MOCK_URL/"; do
    rm -rf "$D/out"
    start_mock --key "$KEY"; export ATLASCLOUD_BASE_URL="${host/MOCK_URL/$MOCK_URL}"
    run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "bare host $ATLASCLOUD_BASE_URL"
    expect_eq "$(stat_of submissions)" 12 "bare host $ATLASCLOUD_BASE_URL: every job submitted under /api/v1"
    expect_eq "$(stat_of requests.other)" 0 "bare host $ATLASCLOUD_BASE_URL: no call outside the API's path"
    stop_mock
done
unset ATLASCLOUD_API_KEY
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 2 "no key"
expect_in "$T/err" "no API key: set ATLASCLOUD_API_KEY or api_key_file" "no key message"
# The key from api_key_file, with blank lines and spaces around it as editors leave them.
# (The file lives outside $T, where section 10 looks for the key in every file written.)
K=$(mktemp -d); D=$T/keyfile; make_batch "$D" 2 "api_key_file: $K/key.txt"
printf '\n  %s \r\n\n' "$KEY" > "$K/key.txt"; chmod 600 "$K/key.txt"
start_mock --key "$KEY"; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "the key read from api_key_file"
expect_eq "$(stat_of unauthorized)" 0 "api_key_file: no call refused"
stop_mock; rm -rf "$K"
export ATLASCLOUD_API_KEY="$KEY"

# --- 8. the lock: a second run on the same state exits 75 ---
D=$T/lock; make_batch "$D" 1
start_mock --key "$KEY"; use_mock
"$SEEDBATCH" validate "$D/m.yaml" >/dev/null
mkdir -p "$D/out/.seedbatch"
flock "$D/out/.seedbatch/state.db.lock" sleep 5 & holder=$!
sleep 0.3
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 75 "locked state"
expect_in "$T/err" "another seedbatch run is using" "lock message"
expect_eq "$(stat_of api_requests)" 0 "locked run sent nothing"
kill $holder 2>/dev/null; wait $holder 2>/dev/null
stop_mock
# `seedbatch results` during a run: both would write results.jsonl through the same
# temporary name, each replacing the other's as it is written. It waits its turn (75).
D=$T/lock2; make_batch "$D" 2
start_mock --key "$KEY" --latency 3000; use_mock
"$SEEDBATCH" run "$D/m.yaml" >/dev/null 2>&1 & pid=$!
for _ in $(seq 1 100); do [ "$(stat_of submissions)" -ge 2 ] && break; sleep 0.05; done
run "$SEEDBATCH" results "$D/m.yaml"; expect_rc 75 "results during a run"
expect_in "$T/err" "a run is using $D/out/.seedbatch/state.db: it writes $D/out/results.jsonl itself" "results message"
wait $pid; expect_eq "$?" 0 "the run"
run "$SEEDBATCH" results "$D/m.yaml"; expect_rc 0 "results after it"
expect_eq "$(grep -c '"status":"succeeded"' "$D/out/results.jsonl")" 2 "results.jsonl complete"
stop_mock

# --- 9. SIGTERM: exit 75 within a few seconds, results written; the rerun resumes ---
D=$T/term; make_batch "$D" 6
start_mock --key "$KEY" --latency 4000; use_mock
"$SEEDBATCH" run "$D/m.yaml" >"$T/out" 2>"$T/err" & pid=$!
for _ in $(seq 1 100); do [ "$(stat_of submissions)" -ge 6 ] && break; sleep 0.05; done
kill -TERM $pid; S=$(date +%s); wait $pid; RC=$?; E=$(( $(date +%s) - S ))
expect_rc 75 "SIGTERM"
[ "$E" -le 7 ] && pass || fail "SIGTERM took ${E}s"
expect_in "$T/err" "run the same command to resume" "SIGTERM message"
[ -s "$D/out/results.jsonl" ] && pass || fail "results.jsonl written on SIGTERM"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE prediction_id IS NOT NULL")" 6 "prediction ids committed"
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "resume after SIGTERM"
expect_eq "$(stat_of submissions)" 6 "resume polled, never resubmitted"
expect_eq "$(grep -c '"status":"succeeded"' "$D/out/results.jsonl")" 6 "all done after resume"
stop_mock

# --- 9a. Under timeout(1), the SIGTERM it sends to the process and to its group arrives
# twice within milliseconds: one stop, drained (results written, ids kept), exit 75 ---
D=$T/timeout; make_batch "$D" 6
start_mock --key "$KEY" --latency 4000; use_mock
timeout --preserve-status 2 "$SEEDBATCH" run "$D/m.yaml" >"$T/out" 2>"$T/err"; RC=$?
expect_rc 75 "under timeout(1)"
expect_not_in "$T/err" "second signal" "timeout(1)'s two SIGTERMs are one stop"
expect_in "$T/err" "run the same command to resume" "under timeout(1): the stop's message"
[ -s "$D/out/results.jsonl" ] && pass || fail "under timeout(1): results.jsonl written"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE prediction_id IS NOT NULL")" 6 "under timeout(1): prediction ids committed"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE state='submitting'")" 0 "under timeout(1): no submit left in doubt"
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "resume after timeout(1)"
expect_eq "$(stat_of submissions)" 6 "after timeout(1): polled, never resubmitted"
stop_mock
# The kernel merges a signal still pending with its copy, so timeout(1)'s pair is often
# delivered once: here the two come 50 ms apart, each delivered, while a slow poll keeps
# the stop's grace period busy (a second stop would end it at once).
D=$T/twice; make_batch "$D" 6
start_mock --key "$KEY" --latency 20000 --fault poll:slow:1 --slow-ms 15000; use_mock
"$SEEDBATCH" run "$D/m.yaml" >"$T/out" 2>"$T/err" & pid=$!
for _ in $(seq 1 100); do [ "$(stat_of requests.poll)" -ge 6 ] && break; sleep 0.05; done
kill -TERM $pid; sleep 0.05; kill -TERM $pid; wait $pid; RC=$?
expect_rc 75 "two SIGTERMs 50 ms apart"
expect_in "$T/err" "terminated: finishing transfers under way" "two SIGTERMs: the drain began"
expect_not_in "$T/err" "second signal" "two SIGTERMs 50 ms apart are one stop"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE prediction_id IS NOT NULL")" 6 "two SIGTERMs: prediction ids committed"
[ -s "$D/out/results.jsonl" ] && pass || fail "two SIGTERMs: results.jsonl written"
stop_mock

# --- 9b. SIGHUP (the terminal closed) stops a run as SIGTERM does; submits waiting for
# another try after 503s go back to pending, unflagged: the rerun submits them once each ---
D=$T/hup; make_batch "$D" 4
start_mock --key "$KEY" --fault submit:503:1; use_mock
"$SEEDBATCH" run "$D/m.yaml" >"$T/out" 2>"$T/err" & pid=$!
for _ in $(seq 1 100); do [ "$(stat_of requests.submit)" -ge 4 ] && break; sleep 0.05; done
kill -HUP $pid; wait $pid; RC=$?
expect_rc 75 "SIGHUP"
expect_in "$T/err" "hung up: finishing transfers under way" "SIGHUP message"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE state='pending' AND possible_duplicate=0")" 4 "503'd submits back to pending, unflagged"
stop_mock
start_mock --key "$KEY"; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "resume after SIGHUP"
expect_eq "$(stat_of submissions)" 4 "one submit a job"
expect_eq "$(grep -c '"possible_duplicate":true' "$D/out/results.jsonl")" 0 "none flagged"
stop_mock

# --- 9c. logs whose reader has gone (2>&1 | head): the run goes on to the end ---
D=$T/pipe; make_batch "$D" 6
start_mock --key "$KEY" --latency 300; use_mock
"$SEEDBATCH" run --debug "$D/m.yaml" 2>&1 | head -2 >/dev/null; RC=${PIPESTATUS[0]}
expect_rc 0 "a run whose stderr is closed early"
expect_eq "$(grep -c '"status":"succeeded"' "$D/out/results.jsonl")" 6 "all done"
stop_mock

# --- 9d. started with standard input, output and error closed (">&-", some supervisors):
# no log line lands in a file the run opened, and the run ends normally ---
D=$T/closedfds; make_batch "$D" 6
start_mock --key "$KEY" --latency 300; use_mock
"$SEEDBATCH" run --debug "$D/m.yaml" <&- >&- 2>&-; RC=$?
expect_rc 0 "a run started with descriptors 0 to 2 closed"
expect_eq "$(grep -c '"status":"succeeded"' "$D/out/results.jsonl")" 6 "all done"
expect_eq "$(ls "$D/out" | grep -c '^job-p[0-9]_[12]\.png$')" 12 "12 outputs"
check_outputs "$D/out/results.jsonl" "$D/out"
expect_eq "$(grep -rl 'seedbatch: ' "$D/out" | wc -l)" 0 "no log line in any file of the output directory"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "PRAGMA integrity_check")" ok "state integrity_check"
stop_mock

# --- 9e. started under nohup (SIGHUP ignored) or as a script's background job (SIGINT
# ignored): those signals leave the run going; started with SIGTERM blocked, it still stops ---
D=$T/nohup; make_batch "$D" 6
start_mock --key "$KEY" --latency 1500; use_mock
bash -c 'trap "" HUP INT; exec "$0" run "$1"' "$SEEDBATCH" "$D/m.yaml" >"$T/out" 2>"$T/err" & pid=$!
for _ in $(seq 1 100); do [ "$(stat_of submissions)" -ge 6 ] && break; sleep 0.05; done
kill -HUP $pid; kill -INT $pid; wait $pid; RC=$?
expect_rc 0 "SIGHUP and SIGINT ignored at start stay ignored"
expect_eq "$(grep -c '"status":"succeeded"' "$D/out/results.jsonl")" 6 "the run went on to the end"
stop_mock
D=$T/blocked; make_batch "$D" 6
start_mock --key "$KEY" --latency 4000; use_mock
python3 -c 'import os, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}); os.execv(sys.argv[1], sys.argv[1:])' \
    "$SEEDBATCH" run "$D/m.yaml" >"$T/out" 2>"$T/err" & pid=$!
for _ in $(seq 1 100); do [ "$(stat_of submissions)" -ge 6 ] && break; sleep 0.05; done
kill -TERM $pid; wait $pid; RC=$?
expect_rc 75 "SIGTERM stops a run started with it blocked"
expect_in "$T/err" "terminated: finishing transfers under way" "SIGTERM message"
stop_mock

# --- 9f. a stop before the loop: while the local images are checked (hashing a large
# batch takes a while), exit 75 at once with nothing sent or written; while the state is
# synced, the run stops as soon as it starts, with the new jobs kept pending ---
D=$T/early; mkdir -p "$D/img"
"$GEN_IMAGE" jpeg 64 64 "$D/base.jpg" 1
# 200 sparse images of 9 MB: the check reads and hashes 1.8 GB, seconds, on no disk space.
for i in $(seq 1 200); do cp "$D/base.jpg" "$D/img/$i.jpg"; truncate -s $((9000000 + i)) "$D/img/$i.jpg"; done
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\noutput_dir: out\njobs:\n  - foreach: "img/*.jpg"\n    prompt: "p {stem}"\n    images: ["{path}"]\n' > "$D/m.yaml"
start_mock --key "$KEY"; use_mock
"$SEEDBATCH" run "$D/m.yaml" >"$T/out" 2>"$T/err" & pid=$!
# Signalled once it holds one of the images open: the check is under way.
for _ in $(seq 1 200); do ls -l /proc/$pid/fd 2>/dev/null | grep -q "$D/img/" && break; sleep 0.02; done
kill -TERM $pid; wait $pid; RC=$?
expect_rc 75 "SIGTERM during the check"
expect_in "$T/err" "terminated while checking the manifests: nothing was sent; run the same command to start" "message"
expect_eq "$(stat_of api_requests)" 0 "nothing sent"
[ ! -e "$D/out" ] && pass || fail "nothing written: $(ls -A "$D/out")"
stop_mock
D=$T/early2; make_batch "$D" 4
start_mock --key "$KEY"; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "a first batch of 4"
for i in 5 6 7 8; do "$GEN_IMAGE" jpeg 64 80 "$D/img/p$i.jpg" "$i"; done
# Another process holds the state's write lock: the sync of the 4 new jobs waits for it
# (busy timeout), and the signal arrives then.
python3 -c '
import os, sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN EXCLUSIVE")
open(sys.argv[2], "w").close()
while not os.path.exists(sys.argv[3]):
    time.sleep(0.02)
c.execute("ROLLBACK")' "$D/out/.seedbatch/state.db" "$T/held" "$T/release" & holder=$!
for _ in $(seq 1 200); do [ -e "$T/held" ] && break; sleep 0.02; done
"$SEEDBATCH" run "$D/m.yaml" >"$T/out" 2>"$T/err" & pid=$!
for _ in $(seq 1 200); do ls -l /proc/$pid/fd 2>/dev/null | grep -q 'state.db.lock' && break; sleep 0.02; done
sleep 0.3; kill -TERM $pid; touch "$T/release"; wait $pid; RC=$?; wait $holder
expect_rc 75 "SIGTERM during the sync"
expect_in "$T/err" "terminated: finishing transfers under way" "message"
expect_eq "$(stat_of submissions)" 4 "no submit after the signal"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE state='pending'")" 4 "the new jobs synced, pending"
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "the rerun"
expect_eq "$(stat_of submissions)" 8 "the 4 new jobs submitted once each"
expect_eq "$(grep -c '"status":"succeeded"' "$D/out/results.jsonl")" 8 "all 8 done"
stop_mock

# --- 9g. a stop after the loop has ended, while results.jsonl is written (strace holds
# its rename back 2 s): the results are finished and in place, the run's own exit code.
# (LeakSanitizer cannot work under ptrace: off for this run of the sanitizer build.) ---
D=$T/late; make_batch "$D" 4
start_mock --key "$KEY"; use_mock
ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" strace -f -qq -o /dev/null -e trace=rename \
    -e inject=rename:delay_enter=2000000 "$SEEDBATCH" run "$D/m.yaml" >"$T/out" 2>"$T/err" & tracer=$!
pid=""; for _ in $(seq 1 300); do pid=$(pgrep -P $tracer) && break; sleep 0.01; done
for _ in $(seq 1 1000); do [ -e "$D/out/.results.jsonl.tmp" ] && break; sleep 0.02; done
sleep 0.3; kill -TERM $pid; wait $tracer; RC=$?
expect_rc 0 "SIGTERM while the final results are written"
expect_in "$T/err" "terminated after the run had ended: its results were written first" "message"
expect_eq "$(grep -c '"status":"succeeded"' "$D/out/results.jsonl" 2>/dev/null)" 4 "results.jsonl complete"
[ ! -e "$D/out/.results.jsonl.tmp" ] && pass || fail "temporary results file left"
stop_mock

# The key in no file these runs wrote.
grep -rl -- "$KEY" "$T" --include='*' 2>/dev/null | grep -v '/err$\|/out$' > "$T/keyfiles" || true
expect_eq "$(wc -l < "$T/keyfiles")" 0 "key absent from every file written"

finish
