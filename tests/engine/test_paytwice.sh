#!/usr/bin/env bash
# Never pay twice: a submit that reached the provider is never sent again blindly, and
# what it may have cost counts against max_cost; a state that is not one is refused;
# the exact number of predictions the server made is asserted each time.
. "$(dirname "$0")/../lib.sh"

KEY="pay-twice-$$"
export ATLASCLOUD_API_KEY="$KEY"
. "$(dirname "$0")/remote_batch.sh"
batch() { remote_batch "$1" "$2" "$3" 8 "${4:-job}"; } # batch DIR N MAX_COST [PROMPT]

# --- 1. a 2xx whose id cannot be read is never submitted again; its possible charge counts ---
D=$T/noid; batch "$D" 12 0.20
start_mock --key "$KEY" --latency 100 --fault submit:garbage:1; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 4 "no id: stopped by max_cost"
R=$D/out/results.jsonl
expect_eq "$(stat_of predictions)" 6 "no id: six predictions made, each once (the cap allows six)"
expect_eq "$(stat_of requests.submit)" 6 "no id: no submit sent again"
expect_eq "$(grep -c '"kind":"server"' "$R")/$(grep -c '"possible_duplicate":true' "$R")" 6/6 "no id: failed, flagged"
expect_eq "$(grep -c '"status":"pending"' "$R")" 6 "no id: the rest wait"
expect_in "$R" "the provider accepted the submit (HTTP 200) but its answer had no id" "no id: said in results"
expect_in "$T/err" 'spend $0.00 (up to $0.19 if the 6 flagged submissions were billed)' "no id: the summary's upper bound"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT sum(uncertain_submits) FROM jobs")" 6 "no id: kept in the state"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) || ',' || sum(images) || ',' || count(prediction_id) FROM charges WHERE flagged=1")" \
    "6,6,0" "no id: six flagged charges in the ledger"
run "$SEEDBATCH" status "$D/m.yaml"
expect_in "$T/out" 'spent: $0.00 in 6 charges (up to $0.19 if the 6 flagged submissions were billed)' "no id: status"
run "$SEEDBATCH" run --dry-run "$D/m.yaml"
expect_in "$T/out" '(already spent: $0.00, up to $0.19 if the 6 flagged submissions were billed)' "no id: dry-run"
expect_in "$T/out" 'max_cost $0.20: the run would stop submitting before the quote is reached ($0.01 of it left)' "no id: dry-run counts them against the cap"
# A run that fits nothing more submits nothing: the six count as billed.
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 4 "no id: the next run stays within max_cost"
expect_eq "$(stat_of requests.submit)" 6 "no id: still six submits"
stop_mock
# --retry-failed submits them again, saying it may pay twice.
sed -i 's/max_cost: 0.20/max_cost: 1.00/' "$D/m.yaml"
start_mock --key "$KEY" --latency 100; use_mock
run "$SEEDBATCH" run --progress never --retry-failed "$D/m.yaml"; expect_rc 0 "no id: --retry-failed"
expect_eq "$(stat_of predictions)" 12 "no id: the six again and the six pending"
expect_eq "$(grep -c 'submitting it again may pay twice' "$T/err")" 6 "no id: each one said"
expect_eq "$(grep -c '"possible_duplicate":true' "$R")" 6 "no id: still flagged"
stop_mock

# --- 2. answers lost on about half the submits: the cap holds, counting them as billed ---
D=$T/lost; batch "$D" 12 0.20
start_mock --key "$KEY" --latency 100 --seed 7 --fault submit:lost:0.5; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"
R=$D/out/results.jsonl
n=$(stat_of predictions)
[ "$n" -le 6 ] && pass || fail "lost answers: $n predictions under a cap that allows 6"
expect_eq "$(unflagged_duplicates "$R")" 0 "lost answers: duplicates only where flagged"
u=$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT sum(uncertain_submits) FROM jobs")
[ "$u" -ge 1 ] && pass || fail "lost answers: none counted as possibly billed"
expect_eq "$(( n ))" "$(( $(grep -c '"status":"succeeded"' "$R") + u ))" "lost answers: every prediction made is a success or counted as possibly billed"
stop_mock

# --- 3. a 500 or a 504 to a submit flags it and counts it; a 503 or 429 does not ---
for f in 500 504 503 429; do
    D=$T/s$f; batch "$D" 1 1.00
    start_mock --key "$KEY" --latency 100 --fault "submit:$f:#1"; use_mock
    run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "submit answered $f, then taken"
    flagged=$(results_field "$D/out/results.jsonl" j1 possible_duplicate)
    case $f in 500|504) want=true ;; *) want=false ;; esac
    expect_eq "$flagged/$(stat_of requests.submit)" "$want/2" "submit answered $f: flagged $want, sent twice"
    stop_mock
done

# --- 4. patience: a submit answered after 35 s is waited for (no low-speed abort; a wait of
# its own, so the regular build runs it, not the sanitized one as well) ---
if [ "${SANITIZED:-0}" != 1 ]; then
    D=$T/slow; batch "$D" 2 1.00
    start_mock --key "$KEY" --latency 100 --fault submit:slow:1 --slow-ms 35000; use_mock
    run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "submits answered after 35 s"
    expect_eq "$(stat_of requests.submit)/$(stat_of predictions)" 2/2 "slow answers: each job submitted once"
    expect_eq "$(grep -c '"possible_duplicate":false' "$D/out/results.jsonl")" 2 "slow answers: nothing flagged"
    stop_mock
fi
# ... and limits.submit_timeout bounds the wait: given up on, counted as maybe billed, retried.
D=$T/gaveup; batch "$D" 1 1.00
sed -i 's/max_attempts: 6, max_cost/max_attempts: 2, submit_timeout: 2s, max_cost/' "$D/m.yaml"
start_mock --key "$KEY" --latency 100 --fault submit:slow:#1 --slow-ms 6000; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "a submit past submit_timeout, then one answered"
expect_eq "$(stat_of requests.submit)" 2 "gave up on one, sent one more"
expect_eq "$(results_field "$D/out/results.jsonl" j1 possible_duplicate)" true "the one given up on may have been billed: flagged"
expect_in "$T/err" "(up to \$0.06 if the 1 flagged submission was billed)" "counted in the upper bound"
stop_mock

# --- 5. a pause of the process (SIGSTOP, then SIGCONT) never turns answers that came meanwhile into failures ---
D=$T/pause; batch "$D" 8 1.00
sed -i 's/max_cost: 1.00/max_cost: 1.00, submit_timeout: 3s/' "$D/m.yaml"
start_mock --key "$KEY" --latency 100 --fault submit:slow:1 --slow-ms 1500; use_mock
"$SEEDBATCH" run --progress never "$D/m.yaml" >"$T/out" 2>"$T/err" &
SB=$!
sleep 0.7; kill -STOP "$SB"; sleep 6; kill -CONT "$SB"
wait "$SB"; RC=$?
expect_rc 0 "stopped for 6 s while 8 submits waited for their answers"
expect_eq "$(stat_of requests.submit)/$(stat_of predictions)" 8/8 "paused: each job submitted once"
expect_eq "$(grep -c '"possible_duplicate":false' "$D/out/results.jsonl")" 8 "paused: nothing flagged"
expect_in "$T/err" "the process was paused for" "paused: said"
stop_mock

# --- 6. downloads that fail are tried again with fresh URLs, not bought again ---
D=$T/dl404; batch "$D" 4 1.00
start_mock --key "$KEY" --latency 100 --fault download:404:#2; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "a 404 on an output URL right after completed"
expect_eq "$(stat_of predictions)" 4 "dl404: nothing bought again"
expect_eq "$(stat_of requests.download)" 6 "dl404: the two fetched again"
[ "$(stat_of requests.poll)" -ge 6 ] && pass || fail "dl404: polled again for fresh URLs"
stop_mock
# Failing for longer than limits.download_patience: the job fails (server), its charge kept;
# --retry-failed then polls it again and downloads, without paying again.
D=$T/dlgone; batch "$D" 2 1.00
sed -i 's/max_cost: 1.00/max_cost: 1.00, download_patience: 2s/' "$D/m.yaml"
start_mock --key "$KEY" --latency 100 --fault download:404:1; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 1 "outputs 404 past download_patience"
R=$D/out/results.jsonl
expect_eq "$(results_field "$R" j1 error.kind)" server "dlgone: kind server"
expect_in "$R" "expired or missing (still after" "dlgone: said how long it was tried"
expect_eq "$(results_field "$R" j1 cost_usd)" 0.032 "dlgone: the prediction's charge kept"
[ "$(stat_of requests.download)" -ge 4 ] && pass || fail "dlgone: tried more than once"
curl -s -X POST "$MOCK_URL/_mock/faults/clear" >/dev/null
run "$SEEDBATCH" run --progress never --retry-failed "$D/m.yaml"; expect_rc 0 "dlgone: --retry-failed downloads them"
expect_eq "$(stat_of predictions)" 2 "dlgone: polled again, not bought again"
expect_eq "$(results_field "$R" j1 status)/$(results_field "$R" j2 status)" succeeded/succeeded "dlgone: both written"
stop_mock
# ... and when the provider no longer has the prediction, --retry-failed submits it again (once).
D=$T/dllost; batch "$D" 1 1.00
sed -i 's/max_cost: 1.00/max_cost: 1.00, download_patience: 1s/' "$D/m.yaml"
start_mock --key "$KEY" --latency 100 --fault download:404:1; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 1 "dllost: the first run fails the job"
stop_mock
sqlite3 "$D/out/.seedbatch/state.db" "UPDATE jobs SET submitted_at = submitted_at - 120000" # older than the early-404 window
start_mock --key "$KEY" --latency 100; use_mock # a provider that forgot it
run "$SEEDBATCH" run --progress never --retry-failed "$D/m.yaml"; expect_rc 0 "dllost: --retry-failed"
expect_in "$T/err" "the provider no longer has its prediction" "dllost: said"
expect_eq "$(stat_of predictions)" 1 "dllost: submitted again once"
expect_eq "$(results_field "$D/out/results.jsonl" j1 status)" succeeded "dllost: done"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(DISTINCT prediction_id) || ',' || sum(cost) FROM charges")" \
    "2,0.064" "dllost: both predictions charged in the ledger"
expect_eq "$(results_field "$D/out/results.jsonl" j1 total_cost_usd)" 0.064 "dllost: the job's total counts both"
stop_mock

# --- 7. the wall clock stepped an hour ahead 1 s into a run: no job times out for it ---
FT=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
if [ -e "$FT" ] && [ "${SANITIZED:-0}" != 1 ]; then
    D=$T/clock; batch "$D" 4 1.00
    sed -i 's/max_cost: 1.00/max_cost: 1.00, job_timeout: 30s/' "$D/m.yaml"
    echo "+0" > "$T/faketime"
    start_mock --key "$KEY" --latency 3000; use_mock
    (sleep 1; echo "+1h" > "$T/faketime") &
    run env LD_PRELOAD="$FT" FAKETIME_TIMESTAMP_FILE="$T/faketime" FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1 \
        "$SEEDBATCH" run --progress never "$D/m.yaml"
    expect_rc 0 "a wall-clock step of +1 h during the run"
    expect_eq "$(grep -c '"status":"succeeded"' "$D/out/results.jsonl")" 4 "clock step: no job failed timeout"
    expect_eq "$(stat_of predictions)" 4 "clock step: each paid once"
    # (the step did happen: the finish is stamped an hour after the submit)
    expect_eq "$(python3 -c '
import json, sys, datetime
r = json.loads(open(sys.argv[1]).readline())
t = lambda s: datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ")
print(int((t(r["finished_at"]) - t(r["submitted_at"])).total_seconds()) // 3600)' "$D/out/results.jsonl")" 1 "clock step: it happened"
    stop_mock
else
    echo "clock step: libfaketime (LD_PRELOAD) runs in the regular build only"
fi

finish
