#!/usr/bin/env bash
# The progress line as a person sees it: a run in a real terminal (tmux) at 60 and 80
# columns, its screen captured while it runs: no line wider than the pane (wrapped
# rows joined back), one progress line and no stale copies of it, failed jobs counted on
# it and not printed one by one, log lines on rows of their own; a stop shows its
# condition; --quiet draws nothing.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/run_batch.sh"
command -v tmux >/dev/null || { echo "tmux is needed"; exit 1; }
SOCK="sbtest$$"
tm() { tmux -L "$SOCK" "$@"; }
trap 'tmux -L "$SOCK" kill-server 2>/dev/null; cleanup' EXIT

# A batch of N jobs on remote images (no uploads): the totals run to four digits.
remote_batch() { # remote_batch DIR N
    mkdir -p "$1"
    {
        printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\n'
        printf 'output_dir: out\nlimits: {concurrency: 32, requests_per_second: 0, poll_interval: 300ms, max_attempts: 2}\njobs:\n'
        for i in $(seq 1 "$2"); do printf '  - {id: j%d, prompt: "edit %d", images: ["https://cdn.example.com/p%d.jpg"]}\n' "$i" "$i" "$i"; done
    } > "$1/m.yaml"
}

# run_in_tmux WIDTH SCRIPT: starts a detached session of WIDTH x 24 running SCRIPT.
run_in_tmux() {
    tm kill-server 2>/dev/null
    tm new-session -d -s run -x "$1" -y 24 "bash $2; echo EXIT=\$?; sleep 60"
}
# watch_pane WIDTH SECONDS: captures the pane every 0.2 s until EXIT= shows or time is up;
# every capture is checked. Log lines longer than the pane wrap as text does; the
# progress line, joined back from any wrapped rows, must be narrower than the pane.
watch_pane() {
    local width=$1 until=$(( $(date +%s) + $2 )) n=0 bad_width=0 stale=0 glued=0 shown_fail=0
    while [ "$(date +%s)" -lt "$until" ]; do
        tm capture-pane -p -J -t run > "$T/pane" 2>/dev/null || break
        n=$((n + 1))
        grep -E '[0-9]+% [0-9]+/[0-9]+, [0-9]+ ok' "$T/pane" > "$T/pline" || true
        while IFS= read -r l; do
            [ "${#l}" -ge "$width" ] && { bad_width=$((bad_width + 1)); echo "wide (${#l}): $l" >> "$T/pane.bad"; }
            echo "$l" >> "$T/plines"
        done < "$T/pline"
        lines=$(wc -l < "$T/pline")
        [ "$lines" -gt 1 ] && { stale=$((stale + 1)); cp "$T/pane" "$T/pane.stale"; }
        grep -qE 'seedbatch: .*[0-9]+% [0-9]+/[0-9]+|[0-9]+ failed[^|]*seedbatch:' "$T/pane" && glued=$((glued + 1))
        grep -q 'failed (rejected)' "$T/pane" && shown_fail=$((shown_fail + 1))
        grep -q '^EXIT=' "$T/pane" && break
        sleep 0.2
    done
    cp "$T/pane" "$T/pane.last"
    echo "$n $bad_width $stale $glued $shown_fail"
}

start_mock --key "$KEY" --latency 1200 --fail-rate 0.1; use_mock
for width in 60 80; do
    D=$T/w$width; remote_batch "$D" 2000
    cat > "$T/run$width.sh" <<EOF2
export ATLASCLOUD_API_KEY='$KEY' ATLASCLOUD_BASE_URL='$ATLASCLOUD_BASE_URL'
cd '$D'
timeout --preserve-status -s INT 6 '$SEEDBATCH' run m.yaml
EOF2
    rm -f "$T/plines"
    run_in_tmux "$width" "$T/run$width.sh"
    read -r n wide stale glued shown < <(watch_pane "$width" 30)
    [ "$n" -ge 10 ] && pass || fail "$width columns: only $n captures"
    expect_eq "$wide" 0 "$width columns: no line as wide as the pane"
    [ "$wide" -eq 0 ] || sed 's/^/  | /' "$T/pane.bad" >&2
    expect_eq "$stale" 0 "$width columns: one progress line, no stale copies"
    [ "$stale" -eq 0 ] || sed 's/^/  | /' "$T/pane.stale" >&2
    expect_eq "$glued" 0 "$width columns: log lines on rows of their own"
    expect_eq "$shown" 0 "$width columns: failed jobs counted, not printed one by one"
    expect_in "$T/pane.last" "EXIT=75" "$width columns: stopped by SIGINT, exit 75"
    expect_in "$T/pane.last" "interrupted: finishing transfers under way" "$width columns: the stop's log line"
    grep -qE '^(\[[#-]+\] )?[0-9]+% [0-9]+/2000, [0-9]+ ok, [1-9][0-9]* failed' "$T/plines" && pass || fail "$width columns: the line counts the failed jobs"
    [ "$width" = 80 ] && { grep -qE ' \| ETA ([0-9]+[hms]|--)' "$T/plines" && pass || fail "80 columns: the ETA shown"; }
    expect_not_in "$T/pane.last" "% " "$width columns: the line cleared at the end"
    tm kill-server 2>/dev/null
done
expect_eq "$(sqlite3 "$T/w80/out/.seedbatch/state.db" "SELECT count(*) > 0 FROM jobs WHERE state='failed'")" 1 "some jobs failed (the mock's fail rate)"

# The stop's condition on the line: a slow poll keeps transfers under way.
stop_mock
start_mock --key "$KEY" --latency 20000 --fault poll:slow:1 --slow-ms 15000; use_mock
D=$T/stop; remote_batch "$D" 8
cat > "$T/stop.sh" <<EOF2
export ATLASCLOUD_API_KEY='$KEY' ATLASCLOUD_BASE_URL='$ATLASCLOUD_BASE_URL'
cd '$D'
'$SEEDBATCH' run m.yaml
EOF2
run_in_tmux 80 "$T/stop.sh"
for _ in $(seq 1 100); do [ "$(stat_of requests.poll)" -ge 8 ] && break; sleep 0.1; done
sleep 0.5
tm send-keys -t run C-c
sleep 1
tm capture-pane -p -J -t run > "$T/pane"
expect_in "$T/pane" "stopping: finishing 8 transfers" "the line shows the stop"
for _ in $(seq 1 100); do tm capture-pane -p -J -t run > "$T/pane"; grep -q '^EXIT=' "$T/pane" && break; sleep 0.1; done
expect_in "$T/pane" "EXIT=75" "the stop ends with exit 75"
tm kill-server 2>/dev/null

# --quiet draws nothing on the terminal.
stop_mock
start_mock --key "$KEY" --latency 800; use_mock
D=$T/quiet; remote_batch "$D" 20
cat > "$T/quiet.sh" <<EOF2
export ATLASCLOUD_API_KEY='$KEY' ATLASCLOUD_BASE_URL='$ATLASCLOUD_BASE_URL'
cd '$D'
'$SEEDBATCH' run --quiet m.yaml
EOF2
run_in_tmux 80 "$T/quiet.sh"
drawn=0
for _ in $(seq 1 150); do
    tm capture-pane -p -J -t run > "$T/pane"
    grep -qE '[0-9]+% [0-9]+/20' "$T/pane" && drawn=1
    grep -q '^EXIT=' "$T/pane" && break
    sleep 0.1
done
expect_eq "$drawn" 0 "--quiet: no progress line"
expect_in "$T/pane" "EXIT=0" "--quiet run ends well"
expect_eq "$(grep -cv '^EXIT=\|^$' "$T/pane")" 0 "--quiet: nothing else on the screen"
tm kill-server 2>/dev/null
stop_mock

echo "test_terminal.sh: $PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
