#!/usr/bin/env bash
# Calls that hang: an answer slower than the low-speed limit (100 B/s for 30 s) is
# aborted and retried; a connect that is never answered gives up after 10 s.
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
expect_rc 1 "a black-holed server fails the job"
expect_in "$T/err" "after 100" "connect timeout after 10 s named"
expect_in "$T/err" "Timeout was reached" "connect timeout kind named"
[ "$E" -ge 19 ] && [ "$E" -lt 40 ] && pass || fail "two connect attempts took ${E}s (expected about 2 x 10 s)"
finish
