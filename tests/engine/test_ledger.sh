#!/usr/bin/env bash
# Every cent accounted: the charge ledger keeps what each prediction cost through edits,
# removals, retries and cancel; max_cost bounds the state's total spend across runs and
# edits (--max-cost for one run, across the run's manifests); status --charges itemises
# it. Each figure is checked against what the mock made and billed.
. "$(dirname "$0")/../lib.sh"

KEY="ledger-$$"
export ATLASCLOUD_API_KEY="$KEY"
. "$(dirname "$0")/remote_batch.sh"
batch() { remote_batch "$1" "$2" "$3" 4 "${4:-job}"; } # batch DIR N MAX_COST [PROMPT]
q() { sqlite3 "$1/out/.seedbatch/state.db" "$2"; }
# The ledger against the mock: charges, images and their cost (at $0.032 an image).
ledger() { q "$1" "SELECT count(*) || ',' || sum(images) || ',' || printf('%.3f', total(cost)) FROM charges WHERE flagged=0"; }
billed() { local n; n=$(stat_of billed_images); echo "$n,$n,$(awk -v n="$n" 'BEGIN { printf "%.3f", n * 0.032 }')"; }

# --- 1. the cap holds across runs and edits; --max-cost raises it for one run only ---
D=$T/cap; batch "$D" 12 0.20
start_mock --key "$KEY" --latency 50; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 4 "cap: stopped by max_cost"
expect_eq "$(stat_of predictions)" 6 "cap: six predictions (the cap allows six)"
expect_eq "$(ledger "$D")" "$(billed)" "cap: the ledger is what the mock billed"
expect_in "$T/err" "stopped by max_cost \$0.20: spent \$0.19; 6 jobs left unsubmitted would cost up to \$0.19 more (6 images at \$0.0320); raise max_cost in the manifest, or run with --max-cost USD" "cap: exit 4 says spent, left and its cost"
# Every prompt edited: the six done jobs change; the spend stays and no submit fits.
sed -i 's/"job /"edited job /' "$D/m.yaml"
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 4 "edits: still stopped"
expect_eq "$(stat_of predictions)" 6 "edits: editing prompts does not reopen the budget"
expect_in "$T/err" "spend \$0.19, \$0.00 of it in this run" "edits: the summary's spend is the state's"
run "$SEEDBATCH" status "$D/m.yaml"
expect_in "$T/out" "spent: \$0.19 in 6 charges" "edits: status spend"
expect_in "$T/out" "max_cost \$0.20: \$0.01 left" "edits: status budget left"
run "$SEEDBATCH" run --dry-run "$D/m.yaml"
expect_in "$T/out" "cost quote: 12 images x \$0.0320 = \$0.38 (already spent: \$0.19)" "edits: dry-run quote and spend"
expect_in "$T/out" "max_cost \$0.20: the run would stop submitting before the quote is reached (\$0.01 of it left)" "edits: dry-run says the cap binds"
# --max-cost raises the cap for one run: 0.30 leaves room for three more.
run "$SEEDBATCH" run --progress never --max-cost 0.30 "$D/m.yaml"; expect_rc 4 "--max-cost: stopped at its cap"
expect_eq "$(stat_of predictions)" 9 "--max-cost: three more"
expect_in "$T/err" "stopped by --max-cost \$0.30: spent \$0.29" "--max-cost: named in the exit message"
expect_eq "$(ledger "$D")" "$(billed)" "--max-cost: the ledger is what the mock billed"
R=$D/out/results.jsonl
expect_eq "$(results_field "$R" j1 cost_usd)/$(results_field "$R" j1 total_cost_usd)" 0.032/0.064 \
    "results: the current version's cost and the job's total across its versions"
expect_eq "$(results_field "$R" j7 cost_usd)/$(results_field "$R" j7 total_cost_usd)" 0/0 "results: a job never submitted"
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 4 "the manifest's cap again without --max-cost"
expect_eq "$(stat_of predictions)" 9 "--max-cost held for one run only"
# Jobs removed from the manifest keep their charges in the spend.
sed -i '/id: j[123],/d' "$D/m.yaml"
run "$SEEDBATCH" status "$D/m.yaml"
expect_in "$T/out" "spent: \$0.29 in 9 charges" "removed jobs: their charges stay"
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 4 "removed jobs: the cap still binds"
expect_eq "$(stat_of predictions)" 9 "removed jobs: removing jobs does not reopen the budget"
# Cancel changes no charge.
run "$SEEDBATCH" cancel "$D/m.yaml"
expect_eq "$(ledger "$D")" "$(billed)" "cancel: the ledger unchanged"
# status --charges: the ledger as CSV, one row per charge, header first.
run "$SEEDBATCH" status --charges "$D/m.yaml"; expect_rc 0 "status --charges"
expect_eq "$(head -1 "$T/out" | tr -d '\r')" "time,manifest,job_id,prediction_id,fingerprint,images,price_usd,cost_usd,flagged,note" "csv: header"
expect_eq "$(/usr/bin/python3 - "$T/out" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline='')))
print(len(rows), len({r['prediction_id'] for r in rows}), sum(int(r['images']) for r in rows),
      '%.3f' % sum(float(r['cost_usd']) for r in rows), sum(int(r['flagged']) for r in rows),
      len({r['job_id'] for r in rows}), rows[0]['note'])
EOF
)" "9 9 9 0.288 0 6 outputs made" "csv: nine charges, one per prediction, for six jobs"
run "$SEEDBATCH" run --charges "$D/m.yaml"; expect_rc 2 "--charges belongs to status"
run "$SEEDBATCH" status --max-cost 1 "$D/m.yaml"; expect_rc 2 "--max-cost belongs to run"
run "$SEEDBATCH" run --max-cost -1 "$D/m.yaml"; expect_rc 2 "--max-cost: a negative amount refused"
stop_mock

# --- 2. --max-cost bounds the run's manifests together ---
A=$T/two-a; B=$T/two-b; batch "$A" 6 5.00 alpha; batch "$B" 6 5.00 beta
run "$SEEDBATCH" run --dry-run --max-cost 0.20 "$A/m.yaml" "$B/m.yaml"
expect_in "$T/out" "--max-cost \$0.20 for them together: already spent \$0.00; the run would stop submitting before the quote is reached (\$0.20 of it left)" \
    "two manifests: the dry run weighs the cap against both"
start_mock --key "$KEY" --latency 50; use_mock
run "$SEEDBATCH" run --progress never --max-cost 0.20 "$A/m.yaml" "$B/m.yaml"; expect_rc 4 "two manifests: stopped"
expect_eq "$(stat_of predictions)" 6 "two manifests: six predictions between them"
expect_eq "$(( $(q "$A" "SELECT count(*) FROM charges") + $(q "$B" "SELECT count(*) FROM charges") ))" 6 \
    "two manifests: their ledgers hold the six"
stop_mock

# --- 3. a prediction whose downloads fail keeps its charge; --retry-failed polls it
# again and downloads, with no second charge ---
D=$T/retry; batch "$D" 2 1.00
sed -i 's/max_cost: 1.00/max_cost: 1.00, download_patience: 1s/' "$D/m.yaml"
start_mock --key "$KEY" --latency 50 --fault download:404:1; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 1 "downloads gone: jobs fail"
expect_eq "$(ledger "$D")" "2,2,0.064" "downloads gone: both charges kept"
expect_eq "$(results_field "$D/out/results.jsonl" j1 total_cost_usd)" 0.032 "downloads gone: in results"
curl -s -X POST "$MOCK_URL/_mock/faults/clear" >/dev/null
run "$SEEDBATCH" run --progress never --retry-failed "$D/m.yaml"; expect_rc 0 "--retry-failed downloads them"
expect_eq "$(stat_of predictions)" 2 "--retry-failed: nothing bought again"
expect_eq "$(ledger "$D")" "$(billed)" "--retry-failed: the ledger is what the mock billed"
expect_in "$T/err" "spend \$0.06, \$0.00 of it in this run" "--retry-failed: the summary"
stop_mock

# --- 4. --retry-failed cannot pass the cap: failed predictions cost nothing (a job that
# fails gives back what it held), their resubmits count like any other ---
D=$T/rejected; batch "$D" 4 0.10
start_mock --key "$KEY" --latency 50 --fail-rate 1; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 1 "rejected: all fail"
expect_eq "$(stat_of predictions)/$(q "$D" "SELECT count(*) FROM charges")" "4/0" \
    "rejected: all four submitted under a cap for three (each failure gave its room back), none charged"
stop_mock
start_mock --key "$KEY" --latency 50; use_mock
run "$SEEDBATCH" run --progress never --retry-failed "$D/m.yaml"; expect_rc 4 "rejected: --retry-failed stops at the cap"
expect_eq "$(stat_of predictions)" 3 "rejected: three resubmits fit under max_cost, the fourth does not"
expect_in "$T/err" "spent \$0.10; 1 job left unsubmitted would cost up to \$0.03 more" "rejected: the one left said"
expect_eq "$(ledger "$D")" "$(billed)" "rejected: the ledger is what the mock billed"
stop_mock

finish
