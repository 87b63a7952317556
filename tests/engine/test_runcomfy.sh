#!/usr/bin/env bash
# RunComfy through the same engine, cancel, url_prefix media, and several
# manifests in one run sharing one loop and each provider's request budget.
. "$(dirname "$0")/../lib.sh"

KEY="rc-token-$$"
export RUNCOMFY_API_TOKEN="$KEY" ATLASCLOUD_API_KEY="$KEY"
use_mock() { export RUNCOMFY_BASE_URL="$MOCK_URL" ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"; }
force() { curl -s -o /dev/null -X POST "$MOCK_URL/_mock/predictions/$1/phase/$2"; }
rc_batch() { # rc_batch DIR N [extra lines]: RunComfy jobs over local files published under url_prefix
    local d=$1 n=$2; shift 2
    mkdir -p "$d/media"
    for i in $(seq 1 "$n"); do "$GEN_IMAGE" jpeg 64 80 "$d/media/p$i.jpg" "$i"; done
    {
        echo "version: 1"
        echo "provider: runcomfy"
        echo "model: bytedance/seedream-5/lite/edit"
        echo "output_dir: rc.out"
        echo "defaults: {sequential_image_generation: auto, max_images: 3, output_format: png, resolution: 2K}"
        echo "limits: {concurrency: 6, requests_per_second: 0, poll_interval: 200ms, max_attempts: 8}"
        echo "media: {upload: url_prefix, url_prefix: \"https://cdn.example.com/cat/\", root: media}"
        for l in "$@"; do echo "$l"; done
        echo "jobs:"
        echo "  - foreach: \"media/p*.jpg\""
        echo "    id: \"rc-{stem}\""
        echo "    prompt: \"RunComfy edit of {name}\""
        echo "    images: [\"{path}\", \"https://cdn.example.com/brand/logo.png\"]"
    } > "$d/m.yaml"
}

# --- 1. a RunComfy batch with faults, failed predictions and several outputs per job ---
D=$T/rc; rc_batch "$D" 8
printf '  - {id: rc-bad, prompt: "mock:fail please", images: [media/p1.jpg]}\n' >> "$D/m.yaml"
start_mock --key "$KEY" --latency 300 --seed 5 --fault any:503:0.15 --fault any:500:0.05 --fault any:429:0.1 \
    --fault any:drop:0.05 --fault rc_result:garbage:0.1 --fault rc_status:garbage:0.1 --fault download:503:0.1
use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 1 "RunComfy run with a failed job"
R=$D/rc.out/results.jsonl
expect_eq "$(grep -c '"status":"succeeded"' "$R")" 8 "8 jobs succeeded"
expect_eq "$(results_field "$R" rc-p3 outputs)" '["rc-p3_1.png", "rc-p3_2.png", "rc-p3_3.png"]' "three outputs per job"
expect_eq "$(results_field "$R" rc-p3 provider)" runcomfy "provider in results"
expect_eq "$(results_field "$R" rc-bad status)" failed "failed prediction"
expect_eq "$(results_field "$R" rc-bad error.kind)" rejected "failed prediction is rejected"
expect_in "$R" "rejected by content moderation" "provider's message"
# Before check_outputs, whose own downloads the mock counts too.
expect_eq "$(stat_of foreign_agents)" 0 "every request (uploads, submits, polls, downloads) says User-Agent: seedbatch/"
expect_eq "$(stat_of accept_encoding)" 0 "no request asks for compressed answers"
check_outputs "$R" "$D/rc.out"
expect_eq "$(stat_of distinct_submissions)" 9 "each job submitted"
expect_eq "$(unflagged_duplicates "$R")" 0 "duplicates only where flagged"
[ "$(stat_of requests.rc_result)" -ge 9 ] && pass || fail "results were read"
# url_prefix: local files were sent as URLs under the prefix (path under media.root).
curl -s "$MOCK_URL/_mock/stats" | python3 -c '
import json, sys
u = json.load(sys.stdin)["image_urls"]
sys.exit(0 if "https://cdn.example.com/cat/p3.jpg" in u and "https://cdn.example.com/brand/logo.png" in u
         and all(x.startswith("https://cdn.example.com/") for x in u) else 1)' && pass || fail "url_prefix URLs sent"
expect_eq "$(stat_of requests.submit)" 0 "no Atlas calls"
expect_eq "$(stat_of downloads_with_auth)" 0 "no token on downloads"
stop_mock

# --- 2. RunComfy errors: HTTP 200 with error_code, balance, expired request ids ---
D=$T/rce; rc_batch "$D" 3
start_mock --key "$KEY" --fault rc_submit:err200:1; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 3 "HTTP 200 carrying error_code 400004 aborts (token problem)"
expect_eq "$(stat_of requests.rc_submit)" 1 "one call, then nothing"
stop_mock
start_mock --key "$KEY" --fault rc_submit:402:1; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 3 "400002 insufficient balance aborts"
expect_in "$T/err" "the API refused the key (HTTP 402" "balance message"
expect_eq "$(sqlite3 "$D/rc.out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE state='pending'")" 3 "state kept: jobs pending"
stop_mock
# Submitted, then the provider forgets the ids (404001): after 30 s that fails the jobs.
start_mock --key "$KEY" --latency 60000; use_mock
"$SEEDBATCH" run "$D/m.yaml" >/dev/null 2>&1 & pid=$!
for _ in $(seq 1 100); do [ "$(stat_of submissions)" -ge 3 ] && break; sleep 0.05; done
kill -TERM $pid; wait $pid
stop_mock
sqlite3 "$D/rc.out/.seedbatch/state.db" "UPDATE jobs SET submitted_at = submitted_at - 120000"
start_mock --key "$KEY"; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 1 "expired request ids"
expect_eq "$(results_field "$D/rc.out/results.jsonl" rc-p1 error.code)" 404001 "404001 kept"
expect_in "$D/rc.out/results.jsonl" "no longer known to the provider" "expired message"
expect_eq "$(stat_of requests.rc_submit)" 0 "expired jobs are not resubmitted"
stop_mock

# --- 3. cancel: queued requests cancelled remotely, unsent jobs locally, processing ones kept ---
D=$T/cancel; rc_batch "$D" 5
sed -i 's/concurrency: 6/concurrency: 2/' "$D/m.yaml"
start_mock --key "$KEY" --latency 600000; use_mock
"$SEEDBATCH" run "$D/m.yaml" >/dev/null 2>&1 & pid=$!
for _ in $(seq 1 100); do [ "$(stat_of submissions)" -ge 2 ] && break; sleep 0.05; done
kill -TERM $pid; wait $pid
ids=$(sqlite3 "$D/rc.out/.seedbatch/state.db" "SELECT prediction_id FROM jobs WHERE prediction_id IS NOT NULL ORDER BY id")
first=$(echo "$ids" | head -1); second=$(echo "$ids" | tail -1)
force "$second" running   # already processing: not cancellable
# The API out of reach: both cancel calls fail, are counted and said; the jobs stay as they were.
DEAD=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run env RUNCOMFY_BASE_URL="http://127.0.0.1:$DEAD" timeout 60 "$SEEDBATCH" cancel "$D/m.yaml"
expect_rc 1 "cancel with the API out of reach"
expect_in "$T/err" "2 cancel requests failed (above): those jobs are as they were" "failed cancels counted and said"
expect_eq "$(sqlite3 "$D/rc.out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE state='running'")" 2 "the two submitted jobs as they were"
# Bounded: kept-alive connections must not hold the loop open until the mock drops them (120 s).
run timeout 60 "$SEEDBATCH" cancel "$D/m.yaml"; expect_rc 0 "cancel ends with its calls"
expect_eq "$(stat_of requests.rc_cancel)" 2 "two cancel calls"
expect_eq "$(stat_of cancelled)" 1 "one cancelled at the provider"
expect_in "$T/err" "already being processed: it cannot be cancelled" "not cancellable reported"
DB=$D/rc.out/.seedbatch/state.db
expect_eq "$(sqlite3 "$DB" "SELECT count(*) FROM jobs WHERE state='cancelled'")" 4 "4 jobs cancelled"
expect_eq "$(sqlite3 "$DB" "SELECT state FROM jobs WHERE prediction_id='$second'")" running "processing job kept"
expect_eq "$(grep -c '"status":"cancelled"' "$D/rc.out/results.jsonl")" 4 "results show cancelled"
force "$second" done
subs=$(stat_of submissions)
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 1 "run after cancel: cancelled jobs are not done"
expect_eq "$(stat_of submissions)" "$subs" "cancelled jobs are not resubmitted"
expect_eq "$(sqlite3 "$DB" "SELECT state FROM jobs WHERE prediction_id='$second'")" succeeded "the kept job finished"
stop_mock
start_mock --key "$KEY" --latency 100; use_mock
run "$SEEDBATCH" run --retry-failed=cancelled "$D/m.yaml"; expect_rc 0 "--retry-failed=cancelled"
expect_eq "$(stat_of submissions)" 4 "cancelled jobs submitted again"
stop_mock
# Atlas has no cancel call: its running jobs are reported and kept.
mkdir -p "$T/at/img"; "$GEN_IMAGE" png 40 40 "$T/at/img/a.png"
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\noutput_dir: at.out\njobs:\n  - {id: a1, prompt: one, images: [img/a.png]}\n' > "$T/at/m.yaml"
start_mock --key "$KEY" --latency 600000; use_mock
"$SEEDBATCH" run "$T/at/m.yaml" >/dev/null 2>&1 & pid=$!
for _ in $(seq 1 100); do [ "$(stat_of submissions)" -ge 1 ] && break; sleep 0.05; done
kill -TERM $pid; wait $pid
run "$SEEDBATCH" cancel "$T/at/m.yaml"; expect_rc 0 "cancel on Atlas"
expect_in "$T/err" "cannot be cancelled (it has no cancel call)" "Atlas cannot cancel"
expect_eq "$(sqlite3 "$T/at/at.out/.seedbatch/state.db" "SELECT state FROM jobs")" running "Atlas job kept running"
stop_mock

# --- 4. several manifests in one run: mixed providers, shared budgets, separate states ---
D=$T/mix; rc_batch "$D" 4
mkdir -p "$D/img"; for i in 1 2 3 4; do "$GEN_IMAGE" png 40 40 "$D/img/a$i.png" "$((i + 20))"; done
atlas_manifest() { # atlas_manifest FILE OUTDIR RPS
    {
        echo "version: 1"
        echo "provider: atlascloud"
        echo "model: bytedance/seedream-v5.0-lite/edit-sequential"
        echo "output_dir: $2"
        echo "limits: {concurrency: 8, requests_per_second: $3, poll_interval: 200ms}"
        echo "jobs:"
        for i in $(seq 1 14); do echo "  - {id: $2-$i, prompt: \"atlas $2 $i\", images: [img/a$(( (i % 4) + 1 )).png]}"; done
    } > "$1"
}
atlas_manifest "$D/a.yaml" a.out 0
start_mock --key "$KEY" --latency 200; use_mock
run "$SEEDBATCH" run "$D/m.yaml" "$D/a.yaml"; expect_rc 0 "Atlas and RunComfy in one run"
expect_eq "$(grep -c '"status":"succeeded"' "$D/rc.out/results.jsonl")" 4 "RunComfy manifest done"
expect_eq "$(grep -c '"status":"succeeded"' "$D/a.out/results.jsonl")" 14 "Atlas manifest done"
[ -f "$D/rc.out/.seedbatch/state.db" ] && [ -f "$D/a.out/.seedbatch/state.db" ] && pass || fail "one state per manifest"
expect_eq "$(stat_of requests.rc_submit)" 4 "RunComfy submits"
expect_eq "$(stat_of requests.submit)" 14 "Atlas submits"
stop_mock
# url_prefix works for Atlas too: no upload call, the published URLs are sent.
mkdir -p "$D/pub"; "$GEN_IMAGE" png 40 40 "$D/pub/x y.png" 77
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit\noutput_dir: pub.out\nmedia: {upload: url_prefix, url_prefix: "https://img.example.org/p", root: pub}\njobs:\n  - {id: x, prompt: x, images: ["pub/x y.png"]}\n' > "$D/pub.yaml"
start_mock --key "$KEY"; use_mock
run "$SEEDBATCH" run "$D/pub.yaml"; expect_rc 0 "Atlas with url_prefix"
expect_eq "$(stat_of uploads)" 0 "no upload call"
expect_eq "$(curl -s "$MOCK_URL/_mock/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["image_urls"])')" "['https://img.example.org/p/x%20y.png']" "Atlas /edit got the escaped URL as its one image"
stop_mock
# Two Atlas manifests share Atlas's budget: 6 requests/s together, not 6 each.
atlas_manifest "$D/b.yaml" b.out 6
atlas_manifest "$D/c.yaml" c.out 6
start_mock --key "$KEY" --rate-limit 8; use_mock
run "$SEEDBATCH" run "$D/b.yaml" "$D/c.yaml"; expect_rc 0 "two Atlas manifests, one budget"
expect_eq "$(stat_of refused_rate)" 0 "no refusal: the two share 6 requests/s"
[ "$(stat_of peak_requests_1s)" -le 8 ] && pass || fail "peak $(stat_of peak_requests_1s) in 1 s over 6 + 2"
stop_mock
# Two manifests writing into one output_dir (one state) are refused before anything is sent.
sed 's/output_dir: c.out/output_dir: b.out/' "$D/c.yaml" > "$D/c2.yaml"
run "$SEEDBATCH" run "$D/b.yaml" "$D/c2.yaml"; expect_rc 2 "two manifests, one state"
expect_in "$T/err" "would share the state" "shared state message"

finish
