#!/usr/bin/env bash
# Polls timed from what was learned of the provider's processing time: kept in the state
# per provider and model; a first run starts from the prior (2 to 3 s an image), the next
# one from what the first learned; with limits.poll_interval given, polls follow it.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/run_batch.sh"

# timed_batch DIR N TAG: N one-image jobs on remote images, no poll_interval.
timed_batch() {
    mkdir -p "$1"
    {
        printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\n'
        printf 'output_dir: out\ndefaults: {max_images: 1}\nlimits: {concurrency: 8, requests_per_second: 0}\njobs:\n'
        for i in $(seq 1 "$2"); do printf '  - {id: j%d, prompt: "%s %d", images: ["https://cdn.example.com/p%d.jpg"]}\n' "$i" "$3" "$i" "$i"; done
    } > "$1/m.yaml"
}
DB() { sqlite3 "$D/out/.seedbatch/state.db" "$1"; }

# A first run at 2 s a prediction: the prior's 60% mark (about 2.6 s) finds each done at the first look.
D=$T/prior; timed_batch "$D" 6 first
start_mock --key "$KEY" --latency 2000; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "a first run"
expect_eq "$(stat_of requests.poll)" 6 "first run at 2 s: one poll a job, from the prior"
expect_eq "$(DB "SELECT provider || ' ' || model FROM timings")" "atlascloud bytedance/seedream-v5.0-lite/edit-sequential" "the timing is kept in the state"
expect_eq "$(DB "SELECT json_extract(hist, '\$.samples') > 5.8 FROM timings")" 1 "six samples learned"
stop_mock

# 4.5 s a prediction: the prior looks too early, and a run learns it; the next run (every
# prompt edited, the same state) looks once a job.
D=$T/learn; timed_batch "$D" 8 first
start_mock --key "$KEY" --latency 4500; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "a first run at 4.5 s"
first=$(stat_of requests.poll)
[ "$first" -gt 8 ] && pass || fail "the prior's first look comes before 4.5 s: more than 8 polls expected, $first made"
[ "$first" -le 32 ] && pass || fail "polls after a miss wait longer as the time gone grows: at most 4 a job, $first for 8 jobs"
stop_mock
sed -i 's/"first /"next /' "$D/m.yaml"
start_mock --key "$KEY" --latency 4500; use_mock
run "$SEEDBATCH" run --progress never --debug "$D/m.yaml"; expect_rc 0 "the next run"
expect_eq "$(stat_of submissions)" 8 "the next run submits the eight edited jobs"
expect_eq "$(stat_of requests.poll)" 8 "the next run looks once a job: it starts from what the first learned"
expect_in "$T/err" "processing time per image: median 4." "the learned median is said with --debug"
stop_mock

# A timing row that cannot be read is replaced, not trusted.
DB "UPDATE timings SET hist='{\"w\":\"broken\"}'"
sed -i 's/"next /"third /' "$D/m.yaml"
start_mock --key "$KEY" --latency 300; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "a run over a damaged timing row"
expect_eq "$(DB "SELECT json_valid(hist) AND json_extract(hist, '\$.samples') > 0 FROM timings")" 1 "the row written anew"
stop_mock

# limits.poll_interval given: polls follow it (here every 200 ms from the submit), not the timing.
D=$T/given; timed_batch "$D" 4 first
sed -i 's/requests_per_second: 0}/requests_per_second: 0, poll_interval: 200ms}/' "$D/m.yaml"
start_mock --key "$KEY" --latency 1000; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "poll_interval given"
n=$(stat_of requests.poll)
[ "$n" -ge 12 ] && pass || fail "poll_interval: 200ms over 1 s predictions: at least 3 polls a job, $n for 4"
stop_mock
finish
