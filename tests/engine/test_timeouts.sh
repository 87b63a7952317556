#!/usr/bin/env bash
# Calls that hang: an answer slower than the low-speed limit (100 B/s for 30 s) is
# aborted and retried; a connect that is never answered gives up after 10 s, and
# connects that never succeed stop the run.
. "$(dirname "$0")/../lib.sh"
KEY="to-$$"
export ATLASCLOUD_API_KEY="$KEY"
mkdir -p "$T/img"; "$GEN_IMAGE" jpeg 64 80 "$T/img/p1.jpg" 1
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\noutput_dir: to.out\nlimits: {poll_interval: 100ms, max_attempts: 2}\njobs:\n  - {id: j1, prompt: x, images: [img/p1.jpg]}\n' > "$T/m.yaml"

# A poll whose answer stalls for 45 s: aborted by the low-speed limit at ~30 s, then retried.
start_mock --key "$KEY" --fault poll:slow:#1 --slow-ms 45000
export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"
S=$(date +%s); run "$SEEDBATCH" run "$T/m.yaml"; E=$(( $(date +%s) - S ))
expect_rc 0 "a stalled answer is abandoned and the poll retried"
expect_eq "$(stat_of requests.poll)" 2 "the stalled poll and its retry"
[ "$E" -ge 29 ] && [ "$E" -lt 45 ] && pass || fail "low-speed abort after ${E}s (expected about 30)"
stop_mock

# A black-holed connect: a listening socket whose accept queue is full drops new SYNs.
python3 - "$T/bh_port" <<'PY' &
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)
fill = []
for _ in range(4):  # fill the accept queue; never accept
    c = socket.socket(); c.setblocking(False)
    try: c.connect(("127.0.0.1", s.getsockname()[1]))
    except BlockingIOError: pass
    fill.append(c)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
time.sleep(60)
PY
bh=$!
for _ in $(seq 1 100); do [ -s "$T/bh_port" ] && break; sleep 0.05; done
export ATLASCLOUD_BASE_URL="http://127.0.0.1:$(cat "$T/bh_port")/api/v1"
rm -rf "$T/to.out"
S=$(date +%s); run "$SEEDBATCH" run "$T/m.yaml"; E=$(( $(date +%s) - S ))
kill $bh 2>/dev/null; wait $bh 2>/dev/null
# Connects that time out reach no server: they cost the job no attempt, and a run none of
# whose calls has reached the API stops once 20 s have passed since the first failed
# (the third connect, at about 30 s), leaving the job pending.
expect_rc 75 "a black-holed server stops the run"
expect_in "$T/err" "after 100" "connect timeout after 10 s named"
expect_in "$T/err" "Timeout was reached" "connect timeout kind named"
expect_in "$T/err" "cannot reach the API at $ATLASCLOUD_BASE_URL" "the stop said"
expect_eq "$(results_field "$T/to.out/results.jsonl" j1 status)" pending "the job left pending"
[ "$E" -ge 29 ] && [ "$E" -lt 50 ] && pass || fail "three connect attempts took ${E}s (expected about 3 x 10 s)"
# Kept-alive connections the server closes while idle: each wakes its socket once
# (then it is no longer listened to; a socket that kept waking would spin the loop),
# libcurl opens new ones, and every job ends. The mock closes connections idle for 1 s;
# the answers take 3 s and the polls come every 2 s, so idle connections close.
mkdir -p "$T/idle/img"
for i in 1 2 3 4; do "$GEN_IMAGE" jpeg 64 80 "$T/idle/img/p$i.jpg" "$i"; done
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\noutput_dir: out\nlimits: {concurrency: 4, requests_per_second: 0, poll_interval: 2s}\njobs:\n  - foreach: "img/p*.jpg"\n    id: "job-{stem}"\n    prompt: "Edit {name}"\n    images: ["{path}"]\n' > "$T/idle/m.yaml"
start_mock --key "$KEY" --latency 3000 --idle-timeout 1
export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"
run "$SEEDBATCH" run --debug "$T/idle/m.yaml"
expect_rc 0 "jobs end although the server closes idle connections"
expect_eq "$(grep -c '"status":"succeeded"' "$T/idle/out/results.jsonl")" 4 "every job succeeded"
expect_eq "$(ls "$T/idle/out" | grep -c '^job-p[1-4]_1\.jpg$')" 4 "every output written"
line=$(grep -o 'connections: [0-9]* opened, [0-9]* woke while idle' "$T/err")
opened=$(echo "$line" | awk '{print $2}'); woke=$(echo "$line" | awk '{print $4}')
expect_eq "$opened" "$(( $(stat_of connections) - 1 ))" "the connections opened are the ones the server accepted (less the stats call's)"
[ -n "$woke" ] && [ "$woke" -ge 1 ] && [ "$woke" -le "$opened" ] && pass ||
    fail "idle wakeups: '$woke' (expected 1 to $opened: one at most per connection)"
[ "$opened" -gt 4 ] && pass || fail "connections opened: $opened (closed ones should have been replaced)"
# Every URL of the run is plain (uploads, submits, polls, downloads): libcurl gets each parsed.
line=$(grep -o 'requests: [0-9]*, [0-9]* of them with the URL handed to libcurl parsed' "$T/err")
reqs=$(echo "$line" | awk '{print $2}' | tr -d ,); parsed=$(echo "$line" | awk '{print $3}')
[ -n "$reqs" ] && [ "$reqs" -ge 16 ] && [ "$parsed" = "$reqs" ] && pass ||
    fail "requests: '$reqs', URLs parsed: '$parsed' (expected at least 16, all parsed)"
# Every submit and poll was queued by the scheduler, from the heap of due times (the tick's
# look at every job is only a safety net, so it finds little or nothing due).
line=$(grep -o 'scheduler: [0-9]* calls queued at their due time, [0-9]* by a look at every job' "$T/err")
on_time=$(echo "$line" | awk '{print $2}'); by_scan=$(echo "$line" | awk '{print $9}')
expect_eq "$(( on_time + by_scan ))" "$(( $(stat_of requests.submit) + $(stat_of requests.poll) ))" \
    "every submit and poll sent was queued once by the scheduler"
[ -n "$on_time" ] && [ "$on_time" -gt "$by_scan" ] && pass ||
    fail "calls queued on time: '$on_time', by a look at every job: '$by_scan' (the heap should queue most)"
stop_mock

finish
