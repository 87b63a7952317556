#!/usr/bin/env bash
# The money rules against a second server, written apart from tests/mockapi
# (tests/indie/atlas_server.py, Python's standard library only): a submit answered
# without an id, lost answers, slow answers, a pause of the process, an output that
# 404s or comes cut short, a 401 that echoes the key, a wall-clock step. Each case
# asserts the predictions that server made.
. "$(dirname "$0")/../lib.sh"

KEY="indie-$$-SECRET"
export ATLASCLOUD_API_KEY="$KEY"
SERVER=$(dirname "$0")/../indie/atlas_server.py
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
IPID=""
start_indie() { # start_indie FLAGS...: sets IURL
    rm -f "$T/iport"
    "$PY" "$SERVER" "$T/iport" "$KEY" "$@" 2>"$T/indie.log" &
    IPID=$!
    for _ in $(seq 1 250); do [ -s "$T/iport" ] && break; sleep 0.02; done
    IURL="http://127.0.0.1:$(cat "$T/iport")"
    export ATLASCLOUD_BASE_URL="$IURL"
}
stop_indie() { [ -n "$IPID" ] && kill "$IPID" 2>/dev/null && wait "$IPID" 2>/dev/null; IPID=""; }
istat() { curl -s "$IURL/stats" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
trap 'stop_indie; cleanup' EXIT
batch() { # batch DIR N MAX_COST [more limits]
    mkdir -p "$1/img"; "$GEN_IMAGE" png 40 40 "$1/img/a.png" 3
    {
        printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\noutput_dir: out\n'
        printf 'defaults: {max_images: 1}\nlimits: {concurrency: 8, requests_per_second: 0, poll_interval: 200ms, max_cost: %s%s}\njobs:\n' "$3" "${4:-}"
        for i in $(seq 1 "$2"); do echo "  - {id: j$i, prompt: \"job $i\", images: [img/a.png]}"; done
    } > "$1/m.yaml"
}

# A 2xx without an id: never sent again; the cap holds counting them as billed.
D=$T/noid; batch "$D" 12 0.20
start_indie --noid
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 4 "indie, no id: stopped by max_cost"
expect_eq "$(istat predictions)/$(istat submits)" 6/6 "indie, no id: six predictions, none sent again"
stop_indie
# Every other answer lost after the prediction was made: at most the cap's worth made.
D=$T/lost; batch "$D" 12 0.20
start_indie --drop-every 2
run "$SEEDBATCH" run --progress never "$D/m.yaml"
n=$(istat predictions)
[ "$n" -le 6 ] && [ "$(istat submits)" -ge 2 ] && pass || fail "indie, lost answers: $n predictions under a cap that allows 6"
expect_eq "$(grep -c "the submit.s answer was lost" "$T/err")" "$(( $(istat submits) / 2 ))" "indie, lost answers: each lost one said"
stop_indie
# Answers after 4 s, and a pause of 6 s while they wait (submit_timeout 3 s): each job once.
D=$T/pause; batch "$D" 6 1.00 ", submit_timeout: 3s"
start_indie --delay 1.5
"$SEEDBATCH" run --progress never "$D/m.yaml" >"$T/out" 2>"$T/err" &
SB=$!; sleep 0.7; kill -STOP "$SB"; sleep 6; kill -CONT "$SB"; wait "$SB"; RC=$?
expect_rc 0 "indie, paused while submits waited"
expect_eq "$(istat predictions)" 6 "indie, paused: each job paid once"
stop_indie
# A submit answered after 35 s: waited for (the regular build only: a wait of its own).
if [ "${SANITIZED:-0}" != 1 ]; then
    D=$T/slow; batch "$D" 2 1.00
    start_indie --delay 35
    run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "indie, answers after 35 s"
    expect_eq "$(istat predictions)/$(istat submits)" 2/2 "indie, answers after 35 s: each job sent once"
    stop_indie
fi
# An output that answers 404 once, and one cut short once with no length: fetched again, not bought again.
for f in --out-404-once --out-cut-once; do
    D=$T/out$f; batch "$D" 4 1.00
    start_indie "$f"
    run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "indie $f: done"
    expect_eq "$(istat predictions)/$(istat downloads)" 4/8 "indie $f: four predictions, each output fetched twice"
    bad=$("$PY" -c '
import glob, sys
print(sum(1 for f in glob.glob(sys.argv[1] + "/j*_1.png") if not open(f, "rb").read().endswith(b"IEND\xaeB`\x82")))' "$D/out")
    expect_eq "$bad/$(ls "$D/out" | grep -c '^j[0-9]*_1\.png$')" 0/4 "indie $f: four whole outputs"
    stop_indie
done
# A 401 that echoes the header it refused: the key is never shown.
D=$T/auth; batch "$D" 2 1.00
start_indie --echo-auth
ATLASCLOUD_API_KEY="$KEY-wrong" run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 3 "indie, 401"
expect_not_in "$T/err" "$KEY-wrong" "indie, 401: the key not shown"
expect_in "$T/err" "got Authorization: Bearer [redacted]" "indie, 401: the echo shown redacted"
stop_indie
# A wall-clock step of +1 h 1 s into the run: no job times out, none paid twice.
FT=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
if [ -e "$FT" ] && [ "${SANITIZED:-0}" != 1 ]; then
    D=$T/clock; batch "$D" 4 1.00 ", job_timeout: 30s"
    echo "+0" > "$T/faketime"
    start_indie --processing 3
    (sleep 1; echo "+1h" > "$T/faketime") &
    run env LD_PRELOAD="$FT" FAKETIME_TIMESTAMP_FILE="$T/faketime" FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1 \
        "$SEEDBATCH" run --progress never "$D/m.yaml"
    expect_rc 0 "indie, clock step"
    expect_eq "$(istat predictions)" 4 "indie, clock step: each paid once"
    stop_indie
fi

finish
