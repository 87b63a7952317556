#!/usr/bin/env bash
# The API out of reach: calls that reach no server cost no attempt and go one at a
# time; a run that never reaches the API, or stops reaching it for
# limits.unreachable_timeout, stops with exit 75 and every job as it was.
. "$(dirname "$0")/../lib.sh"

KEY="outage-$$"
export ATLASCLOUD_API_KEY="$KEY"

# A TCP forwarder to the mock that the test stops and starts again on the same port:
# stopped, connections to it are refused, as when the network or the API is down.
cat > "$T/fwd.py" <<'PY'
import asyncio, socket, sys
port_file, target = sys.argv[1], int(sys.argv[2])
port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        w.close()
async def handle(cr, cw):
    try:
        sr, sw = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        cw.close()
        return
    await asyncio.gather(pipe(cr, sw), pipe(sr, cw))
async def main():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    srv = await asyncio.start_server(handle, sock=s)
    open(port_file, "w").write(str(s.getsockname()[1]))
    await srv.serve_forever()
asyncio.run(main())
PY
FWD_PID=""
fwd_start() { # fwd_start [PORT]
    rm -f "$T/fwd_port"
    python3 "$T/fwd.py" "$T/fwd_port" "$(cat "$T/port")" "$@" &
    FWD_PID=$!
    for _ in $(seq 1 100); do [ -s "$T/fwd_port" ] && break; sleep 0.05; done
}
fwd_stop() { kill "$FWD_PID" 2>/dev/null; wait "$FWD_PID" 2>/dev/null; FWD_PID=""; }
trap '[ -n "$FWD_PID" ] && kill "$FWD_PID" 2>/dev/null; cleanup' EXIT

batch() { # batch DIR N LIMITS
    mkdir -p "$1"
    {
        printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\n'
        printf 'output_dir: out\nlimits: {%s}\njobs:\n' "$3"
        for i in $(seq 1 "$2"); do printf '  - {id: j%d, prompt: "p %d", images: ["http://127.0.0.1/in/%d.jpg"]}\n' "$i" "$i" "$i"; done
    } > "$1/m.yaml"
}
db_count() { sqlite3 "$1/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE $2"; }
# run_behind_fwd DIR LATENCY N: the mock, the forwarder in front of it, a run of DIR's
# manifest through it in the background (its pid in sb) until the mock has N submissions.
run_behind_fwd() {
    start_mock --key "$KEY" --latency "$2"
    fwd_start; fport=$(cat "$T/fwd_port")
    export ATLASCLOUD_BASE_URL="http://127.0.0.1:$fport/api/v1"
    "$SEEDBATCH" run "$1/m.yaml" >"$T/out" 2>"$T/err" & sb=$!
    for _ in $(seq 1 100); do [ "$(stat_of submissions)" -ge "$3" ] && break; sleep 0.05; done
}

# --- 1. nothing listens at the base URL: no job fails, the run stops (75) saying why ---
D=$T/never; batch "$D" 10 "concurrency: 4, requests_per_second: 0, max_attempts: 2, unreachable_timeout: 3s"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export ATLASCLOUD_BASE_URL="http://127.0.0.1:$port/api/v1"
S=$(date +%s%N); run "$SEEDBATCH" run "$D/m.yaml"; E=$(( ($(date +%s%N) - S) / 1000000 ))
expect_rc 75 "an API that cannot be reached"
expect_in "$T/err" "cannot reach the API at http://127.0.0.1:$port/api/v1: Couldn't connect to server" "the base URL and the error named"
expect_in "$T/err" "nothing is lost, run again to resume" "what to do said"
expect_in "$T/err" "10 jobs: 0 succeeded, 0 failed, 10 pending" "every job still pending"
expect_eq "$(db_count "$D" "state='pending' AND possible_duplicate=0 AND attempts=0")" 10 "the state: 10 pending, unflagged"
expect_eq "$(grep -c '"status":"pending"' "$D/out/results.jsonl")" 10 "results.jsonl: 10 pending"
[ "$E" -ge 3000 ] && [ "$E" -lt 15000 ] && pass || fail "stopped after ${E} ms (unreachable_timeout 3s)"
# More than max_attempts calls were made, one at a time: none counted against a job. None
# reached a server, and the summary does not count them as calls made (a cost-minded reader
# of "12 submits" would look for 12 charges), but apart.
expect_in "$T/err" "API calls: 0 submits, 0 polls, 0 uploads (0.00 per job besides uploads), " "no call counted as made"
calls=$(grep -o ', [0-9]* more that reached no server' "$T/err" | grep -o '[0-9]*')
[ "${calls:-0}" -gt 2 ] && pass || fail "${calls:-no} calls that reached no server: expected more than max_attempts (2)"

# --- 2. the API gone for 4 s in mid-run: every job done, none failed, though each call
# may be tried only twice (max_attempts 2) ---
D=$T/blip; batch "$D" 30 "concurrency: 10, requests_per_second: 0, poll_interval: 200ms, max_attempts: 2, unreachable_timeout: 60s"
run_behind_fwd "$D" 1500 5
fwd_stop; sleep 4; fwd_start "$fport"
wait $sb; RC=$?
expect_rc 0 "a run outlives a 4 s outage"
expect_eq "$(db_count "$D" "state='succeeded'")" 30 "all 30 succeeded"
expect_eq "$(grep -c '"status":"failed"' "$D/out/results.jsonl")" 0 "none failed"
flagged=$(db_count "$D" "possible_duplicate=1")
expect_eq "$(stat_of duplicate_submissions)" "$flagged" "duplicates only where flagged"
expect_not_in "$T/err" "cannot reach the API" "no stop"
fwd_stop; stop_mock

# --- 3. the API gone for longer than unreachable_timeout: the run stops (75) with
# predictions kept and nothing failed; the next run, the API back, finishes them ---
D=$T/down; batch "$D" 30 "concurrency: 10, requests_per_second: 0, poll_interval: 200ms, max_attempts: 2, unreachable_timeout: 3s"
run_behind_fwd "$D" 2000 10
fwd_stop
wait $sb; RC=$?
expect_rc 75 "the API gone for good"
expect_in "$T/err" "cannot reach the API at http://127.0.0.1:$fport/api/v1" "stop said"
expect_eq "$(db_count "$D" "state='failed'")" 0 "nothing failed"
made=$(stat_of submissions)
expect_eq "$(db_count "$D" "prediction_id IS NOT NULL")" "$(( made - $(stat_of duplicate_submissions) ))" "every prediction made is kept"
expect_eq "$(db_count "$D" "state='submitting'")" 0 "no submit left half-done"
fwd_start "$fport"
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "the next run finishes the batch"
expect_eq "$(db_count "$D" "state='succeeded'")" 30 "all 30 succeeded"
flagged=$(db_count "$D" "possible_duplicate=1")
expect_eq "$(stat_of duplicate_submissions)" "$flagged" "duplicates only where flagged"
fwd_stop; stop_mock

# --- 4. an API that takes every submit and drops the connection: the submits go one at
# a time, paced, until the run stops (75); no job fails, each one tried is flagged ---
D=$T/drop; batch "$D" 20 "concurrency: 8, requests_per_second: 0, poll_interval: 200ms, unreachable_timeout: 4s"
start_mock --key "$KEY" --fault submit:drop:1
export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 75 "an API that answers no submit"
expect_in "$T/err" "Empty reply from server (no answer for" "the stop said"
subs=$(stat_of requests.submit)
[ "$subs" -ge 3 ] && [ "$subs" -le 10 ] && pass || fail "$subs submits in about 4 s: expected 3 to 10, one at a time"
expect_eq "$(db_count "$D" "state='failed'")" 0 "nothing failed"
expect_eq "$(db_count "$D" "possible_duplicate=1")" "$(db_count "$D" "state='submitting'")" "each job tried is flagged, and only those"
expect_eq "$(db_count "$D" "state='pending'")" "$(( 20 - $(db_count "$D" "state='submitting'") ))" "the rest pending"
stop_mock

finish
