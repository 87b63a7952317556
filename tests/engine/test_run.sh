#!/usr/bin/env bash
# seedbatch run against the mock API: outputs, results, counts the server saw, faults,
# failures, resume and key hygiene (test_run_stops.sh: limits, auth, the lock, signals).
. "$(dirname "$0")/../lib.sh"

. "$(dirname "$0")/run_batch.sh"

# --- 1. a clean run: outputs, results, exact server counts; a rerun sends nothing ---
D=$T/clean; make_batch "$D" 6
start_mock --key "$KEY" --latency 300; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "clean run"
expect_eq "$(ls "$D/out" | grep -c '^job-p[0-9]_[12]\.png$')" 12 "12 outputs named <id>_<k>.png"
expect_eq "$(ls -a "$D/out" | grep -c '\.part$')" 0 "no .part files left"
expect_eq "$(wc -l < "$D/out/results.jsonl")" 6 "results.jsonl: one line per job"
expect_eq "$(head -1 "$D/out/results.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')" job-p1 "results in manifest order"
expect_eq "$(results_field "$D/out/results.jsonl" job-p3 status)" succeeded "job status"
expect_eq "$(results_field "$D/out/results.jsonl" job-p3 outputs)" '["job-p3_1.png", "job-p3_2.png"]' "job outputs"
expect_eq "$(results_field "$D/out/results.jsonl" job-p3 cost_usd)" 0.064 "job cost"
expect_eq "$(results_field "$D/out/results.jsonl" job-p3 attempts)" 1 "job attempts"
expect_eq "$(results_field "$D/out/results.jsonl" job-p3 images)" '["img/p3.jpg", "img/logo.png"]' "job images"
expect_eq "$(results_field "$D/out/results.jsonl" job-p3 error)" null "job error null"
# Before check_outputs, whose own downloads the mock counts too.
expect_eq "$(stat_of foreign_agents)" 0 "every request (uploads, submits, polls, downloads) says User-Agent: seedbatch/"
expect_eq "$(stat_of accept_encoding)" 0 "no request asks for compressed answers"
check_outputs "$D/out/results.jsonl" "$D/out"
expect_eq "$(stat_of submissions)" 6 "one submission per job"
expect_eq "$(stat_of duplicate_submissions)" 0 "no duplicate submissions"
expect_eq "$(stat_of uploads)" 7 "uploads == distinct files"
expect_eq "$(stat_of downloads_with_auth)" 0 "no key on output downloads"
expect_in "$T/err" "6 jobs: 6 succeeded, 0 failed" "summary"
expect_in "$T/err" "12 images written" "summary images"
expect_not_in "$T/err" "did not close cleanly" "event loop closed cleanly"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE state='succeeded'")" 6 "state rows"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) FROM uploads")" 7 "upload cache rows"
calls=$(stat_of api_requests)
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "rerun"
expect_eq "$(stat_of api_requests)" "$calls" "a finished batch sends nothing on rerun"
cp "$D/out/results.jsonl" "$T/r1"; rm "$D/out/results.jsonl"
run "$SEEDBATCH" results "$D/m.yaml"; expect_rc 0 "results command"
cmp -s "$T/r1" "$D/out/results.jsonl" && pass || fail "results rewritten identically from the state"
# An edited job runs again; the others are kept; uploads come from the cache.
sed -i 's/Edit {name} for the catalogue/Edit {name} for the spring catalogue/' "$D/m.yaml"
printf '  - {id: extra, prompt: "one more", images: [img/p1.jpg]}\n' >> "$D/m.yaml"
sed -i 's/Edit {name} for the spring catalogue/Edit {name} for the catalogue/' "$D/m.yaml"
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "run with an added job"
expect_eq "$(stat_of submissions)" 7 "only the new job was submitted"
expect_eq "$(stat_of uploads)" 7 "no upload again: cached by content hash"
stop_mock

# --- 1b. a changed job replaces its outputs as a whole: the files of its earlier version
# that its new outputs do not overwrite (fewer images, another format) are removed once
# the new ones are in place; while it fails they stay; nothing but its own outputs goes ---
D=$T/replaced; mkdir -p "$D"
cat > "$D/m.yaml" <<'YAML'
version: 1
provider: atlascloud
model: bytedance/seedream-v5.0-lite/edit-sequential
output_dir: out
limits: {concurrency: 8, requests_per_second: 0, poll_interval: 200ms}
jobs:
  - {id: a, prompt: "three", images: ["https://cdn.example.com/a.jpg"], params: {max_images: 3, output_format: png}}
  - {id: a_1, prompt: "kept", images: ["https://cdn.example.com/b.jpg"], params: {max_images: 2, output_format: png}}
  - {id: c, prompt: "two", images: ["https://cdn.example.com/c.jpg"], params: {max_images: 2, output_format: png}}
YAML
start_mock --key "$KEY"; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "replaced outputs: first run"
expect_eq "$(cd "$D/out" && ls | tr '\n' ' ')" "a_1.png a_1_1.png a_1_2.png a_2.png a_3.png c_1.png c_2.png report.html results.jsonl " "replaced outputs: first outputs"
echo mine > "$D/out/a_notes.txt"
# a: one jpeg now; c: a prompt the provider rejects; a_1 (whose names start like a's) unchanged.
sed -i 's/prompt: "three", images: \(.*\), params: .*}$/prompt: "one", images: \1, params: {max_images: 1, output_format: jpeg}}/; s/prompt: "two"/prompt: "mock:fail two"/' "$D/m.yaml"
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 1 "replaced outputs: second run"
expect_eq "$(cd "$D/out" && ls | tr '\n' ' ')" "a_1.jpg a_1_1.png a_1_2.png a_notes.txt c_1.png c_2.png report.html results.jsonl " "replaced outputs: a's earlier files gone, a_1's and c's kept"
expect_eq "$(results_field "$D/out/results.jsonl" a outputs)" '["a_1.jpg"]' "replaced outputs: results list the new one"
expect_in "$T/err" "m.yaml: 3 outputs of earlier versions of changed jobs removed" "replaced outputs: said"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT id || '=' || replaced_outputs FROM jobs WHERE replaced_outputs IS NOT NULL")" 'c=["c_1.png","c_2.png"]' "replaced outputs: c's kept until it succeeds"
# c changes again (its list joins), is retried and succeeds with one image: both of its
# earlier files go. A name in the list that is not c's output (a damaged state) stays.
sqlite3 "$D/out/.seedbatch/state.db" "UPDATE jobs SET replaced_outputs='[\"c_1.png\",\"c_2.png\",\"a_notes.txt\",\"../m.yaml\"]' WHERE id='c'"
sed -i 's/prompt: "mock:fail two", images: \(.*\), params: .*}$/prompt: "two again", images: \1, params: {max_images: 1, output_format: jpeg}}/' "$D/m.yaml"
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "replaced outputs: third run"
expect_eq "$(cd "$D/out" && ls | tr '\n' ' ')" "a_1.jpg a_1_1.png a_1_2.png a_notes.txt c_1.jpg report.html results.jsonl " "replaced outputs: c's earlier files gone, nothing else"
[ -f "$D/m.yaml" ] && pass || fail "replaced outputs: a name outside the output directory was removed"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE replaced_outputs IS NOT NULL")" 0 "replaced outputs: lists cleared"
stop_mock

# --- 2. every fault at once: all jobs finish, nothing duplicated, refusals only by chance ---
D=$T/faults; make_batch "$D" 12
start_mock --key "$KEY" --latency 200 --seed 11 --early-404 300 --fault any:503:0.15 --fault any:500:0.05 \
    --fault any:429:0.05 --fault any:429ra:0.02 --retry-after 1 --fault any:drop:0.08 --fault poll:garbage:0.1 \
    --fault upload:garbage:0.1 --fault download:truncate:0.15 \
    --fault download:503:0.1 --fault any:slow:0.1 --slow-ms 200
use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "run with faults"
expect_eq "$(grep -c '"status":"succeeded"' "$D/out/results.jsonl")" 12 "all jobs succeeded despite faults"
check_outputs "$D/out/results.jsonl" "$D/out"
expect_eq "$(unflagged_duplicates "$D/out/results.jsonl")" 0 "duplicate submissions only for jobs flagged possible_duplicate"
expect_eq "$(stat_of distinct_uploads)" 13 "every distinct file uploaded"
[ "$(stat_of faults.503)" -gt 0 ] && pass || fail "faults were injected"
stop_mock

# --- 3. an answer lost after the server accepted the submit: one job flagged ---
D=$T/lost; make_batch "$D" 3
start_mock --key "$KEY" --fault submit:lost:#1; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "run with a lost submit answer"
expect_eq "$(grep -c '"possible_duplicate":true' "$D/out/results.jsonl")" 1 "the job whose answer was lost is flagged"
expect_eq "$(stat_of duplicate_submissions)" 1 "server saw that one duplicate"
stop_mock
# The submit follows the uploads on their kept-alive connection: when that dies before
# answering, libcurl would send the request again by itself. That resend is stopped: the
# submit counts as lost (flagged, maybe billed), and the run's own retry goes out after
# its back-off, within max_cost.
D=$T/lost1; make_batch "$D" 1
start_mock --key "$KEY" --fault submit:lost:#1; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "run with a lost answer on a reused connection"
expect_in "$T/err" "job job-p1: the submit's answer was lost" "the lost answer is said"
expect_not_in "$T/err" "the submit was sent 2 times" "libcurl did not send it again by itself"
expect_in "$T/err" "API calls: 2 submits" "both submits counted"
expect_eq "$(grep -c '"possible_duplicate":true' "$D/out/results.jsonl")" 1 "the job is flagged"
expect_eq "$(stat_of submissions)" 2 "the server got the submit twice"
expect_eq "$(stat_of duplicate_submissions)" 1 "one duplicate, the flagged one"
stop_mock

# --- 3c. results.jsonl escapes what a prompt may hold: quotes, backslashes, control
# characters, non-ASCII; every line parses and gives the prompt back exactly ---
D=$T/esc; mkdir -p "$D/img"; "$GEN_IMAGE" jpeg 64 80 "$D/img/p1.jpg" 1
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\noutput_dir: out\nlimits: {concurrency: 2, requests_per_second: 0, poll_interval: 100ms}\njobs:\n  - {id: q1, prompt: "say \\"hi\\" \\\\ back\\ttab\\nline\\u0001 caf\\u00e9 \\u2603", images: [img/p1.jpg]}\n  - {id: q2, prompt: "mock:fail \\"x\\"", images: [img/p1.jpg]}\n' > "$D/m.yaml"
start_mock --key "$KEY"; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 1 "one of the two fails"
expect_eq "$(python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(rows[0]["prompt"] == "say \"hi\" \\ back\ttab\nline\u0001 caf\u00e9 \u2603", rows[1]["error"]["kind"], rows[1]["prompt"], rows[0]["cost_usd"])' "$D/out/results.jsonl")" \
    'True rejected mock:fail "x" 0.032' "escaped prompts round-trip through results.jsonl"
stop_mock

# --- 3d. a local image removed or rewritten after the manifest was checked, before its
# upload: its job fails at once as invalid_input, nothing uploaded for it ---
D=$T/gone; mkdir -p "$D/img"
for i in 1 2 3; do "$GEN_IMAGE" jpeg 64 80 "$D/img/p$i.jpg" "$i"; done
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\noutput_dir: out\nlimits: {concurrency: 1, requests_per_second: 0, poll_interval: 200ms}\njobs:\n  - {id: a, prompt: x, images: [img/p1.jpg]}\n  - {id: b, prompt: y, images: [img/p2.jpg]}\n  - {id: c, prompt: z, images: [img/p3.jpg]}\n' > "$D/m.yaml"
# Job a takes 4 s at the mock: room for the change to land while it runs, on a loaded machine too.
start_mock --key "$KEY" --latency 4000; use_mock
"$SEEDBATCH" run "$D/m.yaml" >"$T/out" 2>"$T/err" & pid=$!
for _ in $(seq 1 200); do [ "$(stat_of submissions)" -ge 1 ] && break; sleep 0.05; done
"$GEN_IMAGE" jpeg 64 80 "$D/img/p2.jpg" 7; rm "$D/img/p3.jpg"   # while job a (concurrency 1) runs
wait $pid; RC=$?
expect_rc 1 "two of three jobs lost their image"
expect_eq "$(results_field "$D/out/results.jsonl" b error.kind)" invalid_input "rewritten: invalid_input"
expect_in "$T/err" "upload of $D/img/p2.jpg failed: it changed after the manifest was checked" "rewritten: said"
expect_eq "$(results_field "$D/out/results.jsonl" c error.kind)" invalid_input "removed: invalid_input"
expect_in "$T/err" "upload of $D/img/p3.jpg failed: it cannot be read any more (No such file or directory)" "removed: said"
expect_eq "$(stat_of requests.upload)" 1 "only the unchanged image uploaded"
expect_eq "$(results_field "$D/out/results.jsonl" a status)" succeeded "the other job done"
stop_mock

# --- 3e. a foreach whose wildcard reaches the output directory ("*/*.jpg" beside m.out/):
# the outputs of a run never come back as new jobs, so reruns pay for nothing ---
D=$T/feedback; mkdir -p "$D/shoes" "$D/bags"
"$GEN_IMAGE" jpeg 64 80 "$D/shoes/a.jpg" 1; "$GEN_IMAGE" jpeg 64 80 "$D/bags/b.jpg" 2
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\nlimits: {requests_per_second: 0, poll_interval: 100ms}\njobs:\n  - foreach: "*/*.jpg"\n    id: "{dir}-{stem}"\n    prompt: "white background"\n    images: ["{path}"]\n' > "$D/m.yaml"
start_mock --key "$KEY"; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "first run"
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "second run"
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "third run"
expect_in "$T/err" 'foreach "*/*.jpg": 2 files in output directories left out' "said"
expect_eq "$(stat_of submissions)" 2 "2 jobs submitted over three runs"
expect_eq "$(wc -l < "$D/m.out/results.jsonl")" 2 "2 jobs in the results"
stop_mock

# --- 4. request rate: the limit holds over every 1 s window ---
D=$T/rate; make_batch "$D" 10 "price_per_image: 0.01"
sed -i 's/requests_per_second: 0/requests_per_second: 8/' "$D/m.yaml"
# The bucket holds one token: at most 8 + 1 sent in any 1 s; the spec allows a burst of 2.
start_mock --key "$KEY" --rate-limit 10; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "rate-limited run"
expect_eq "$(stat_of refused_rate)" 0 "no request refused for rate"
[ "$(stat_of peak_requests_1s)" -le 10 ] && pass || fail "peak $(stat_of peak_requests_1s) requests in 1 s over 8 + 2"
[ "$(stat_of api_requests)" -ge 30 ] && pass || fail "the rate test made too few calls to mean anything"
stop_mock
# 429s from a server slower than our limit: backoff, AIMD, still finishes.
D=$T/rate2; make_batch "$D" 6
sed -i 's/requests_per_second: 0/requests_per_second: 20/' "$D/m.yaml"
start_mock --key "$KEY" --rate-limit 4; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "run against a stricter server limit"
[ "$(stat_of refused_rate)" -gt 0 ] && pass || fail "the server refused some requests"
expect_eq "$(grep -c '"status":"succeeded"' "$D/out/results.jsonl")" 6 "all done after 429s"
stop_mock

# An unlimited run (requests_per_second: 0) against an API that limits: the first 429
# sets the run's ceiling at the rate it was going at, halved, so calls stop meeting
# 429s often enough to use up their attempts.
D=$T/rate3; make_batch "$D" 20
sed -i 's/concurrency: 8, requests_per_second: 0, poll_interval: 200ms, max_attempts: 8/concurrency: 20, requests_per_second: 0, poll_interval: 200ms, max_attempts: 4/' "$D/m.yaml"
start_mock --key "$KEY" --rate-limit 10 --latency 300; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "unlimited run against a server limit of 10 calls a second"
expect_eq "$(grep -c '"status":"succeeded"' "$D/out/results.jsonl")" 20 "all 20 done"
refused=$(stat_of refused_rate)
[ "$refused" -gt 0 ] && [ "$refused" -lt 30 ] && pass || fail "$refused calls refused for rate: expected some, fewer than 30"
stop_mock

# --- 4b. adaptive polling: once the processing time is known, first polls wait for it ---
D=$T/polls; make_batch "$D" 32
start_mock --key "$KEY" --latency 600; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "adaptive polling run"
calls=$(( $(stat_of requests.submit) + $(stat_of requests.poll) ))
[ "$calls" -lt $((3 * 32)) ] && pass || fail "$calls submits and polls for 32 jobs: not under 3 per job"
expect_in "$T/err" "per job besides uploads" "summary reports calls per job"
echo "adaptive polling: $calls API calls for 32 jobs"
stop_mock

# --- 5. failures: rejected prediction, expired outputs, timeout, retry-failed ---
D=$T/fail; make_batch "$D" 2
sed -i 's/max_attempts: 8}/max_attempts: 8, download_patience: 1s}/' "$D/m.yaml"
printf '  - {id: bad, prompt: "mock:fail this", images: [img/p1.jpg]}\n  - {id: gone, prompt: "mock:expire", images: [img/p2.jpg]}\n' >> "$D/m.yaml"
printf '  - {id: tiny, prompt: "x", images: [img/tiny.png]}\n' >> "$D/m.yaml"
"$GEN_IMAGE" png 8 8 "$D/img/tiny.png"
start_mock --key "$KEY"; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 1 "run with failed jobs"
R=$D/out/results.jsonl
expect_eq "$(results_field "$R" bad status)" failed "rejected job failed"
expect_eq "$(results_field "$R" bad error.kind)" rejected "rejected kind"
expect_eq "$(results_field "$R" bad error.code)" 1039 "moderation code"
expect_in "$R" "rejected by content moderation" "provider's message kept"
expect_eq "$(results_field "$R" gone error.kind)" server "expired output kind"
expect_in "$R" "expired or missing" "expired output message"
expect_eq "$(results_field "$R" tiny error.kind)" invalid_input "bad image fails its job"
expect_eq "$(results_field "$R" job-p1 status)" succeeded "other jobs unaffected"
expect_eq "$(stat_of submissions)" 4 "the bad image was never sent"
expect_eq "$(grep -c "warning: $D/m.yaml: job tiny: image 1: $D/img/tiny.png: 8x8 pixels; width and height must be over 14; it fails (invalid_input) and the other jobs run" "$T/err")" 1 "the run says once which job cannot run, and why"
expect_eq "$(grep -c 'it fails (invalid_input)' "$T/err")" 1 "... and no other job"
# --retry-failed leaves a job whose reference image is unusable: it would fail again at
# once, unsent.
run "$SEEDBATCH" run --debug --retry-failed=invalid_input "$D/m.yaml"; expect_rc 1 "retry-failed=invalid_input"
expect_not_in "$T/err" "job tiny: failed -> pending" "the bad image job is not queued again"
expect_not_in "$T/err" "it fails (invalid_input)" "a job that failed so before is not told again"
expect_eq "$(stat_of submissions)" 4 "nothing submitted again"
expect_eq "$(results_field "$R" tiny error.kind)" invalid_input "the bad image still fails its job"
expect_eq "$(results_field "$R" tiny attempts)" 0 "the bad image job was never attempted"
stop_mock
D=$T/timeout; make_batch "$D" 2
sed -i 's/poll_interval: 200ms/poll_interval: 200ms, job_timeout: 1s/' "$D/m.yaml"
start_mock --key "$KEY" --latency 60000; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 1 "run with timeouts"
expect_eq "$(results_field "$D/out/results.jsonl" job-p1 error.kind)" timeout "timeout kind"
stop_mock
start_mock --key "$KEY" --latency 100; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 1 "failed jobs stay failed without --retry-failed"
expect_eq "$(stat_of submissions)" 0 "nothing resubmitted"
run "$SEEDBATCH" run --retry-failed=rejected "$D/m.yaml"; expect_rc 1 "--retry-failed=rejected leaves timeouts"
expect_eq "$(stat_of submissions)" 0 "no timeout job resubmitted"
run "$SEEDBATCH" run --retry-failed=timeout "$D/m.yaml"; expect_rc 0 "--retry-failed=timeout"
expect_eq "$(stat_of submissions)" 2 "timeouts resubmitted"
stop_mock

# --- 5b. a prediction made is never thrown away: a resume long after job_timeout polls it
# first; --retry-failed after failed polls polls again rather than paying again ---
D=$T/late; make_batch "$D" 3
sed -i 's/poll_interval: 200ms, max_attempts: 8/poll_interval: 200ms, max_attempts: 8, job_timeout: 2s/' "$D/m.yaml"
start_mock --key "$KEY" --latency 1500; use_mock
"$SEEDBATCH" run --quiet "$D/m.yaml" >/dev/null 2>&1 & pid=$!
for _ in $(seq 1 100); do [ "$(stat_of submissions)" -ge 3 ] && break; sleep 0.05; done
kill -9 $pid; wait $pid 2>/dev/null
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE state = 'running' AND prediction_id IS NOT NULL")" 3 "killed with three predictions made"
sleep 3 # past job_timeout; the predictions finished at the provider meanwhile
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "resumed after job_timeout: the finished predictions are downloaded"
expect_eq "$(grep -c '"status":"succeeded"' "$D/out/results.jsonl")" 3 "all three succeeded"
expect_eq "$(stat_of submissions)" 3 "nothing submitted again"
stop_mock
D=$T/repoll; make_batch "$D" 3
sed -i 's/poll_interval: 200ms, max_attempts: 8/poll_interval: 200ms, max_attempts: 2/' "$D/m.yaml"
start_mock --key "$KEY" --latency 100 --fault poll:503:#6; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 1 "polls answered 503 twice fail their jobs"
expect_in "$T/err" "3 of the failed jobs have a prediction the provider may still hold: run --retry-failed polls them again, at no new charge" "the run says so"
R=$D/out/results.jsonl
expect_eq "$(grep -c '"kind":"server"' "$R")" 3 "three failed as server"
expect_eq "$(stat_of submissions)" 3 "three predictions made"
run "$SEEDBATCH" status "$D/m.yaml"
expect_in "$T/out" "3 of the failed jobs have a prediction the provider may still hold: run --retry-failed polls them again, at no new charge" "status says so"
run "$SEEDBATCH" status --json "$D/m.yaml"; expect_rc 1 "status --json with failed jobs"
expect_eq "$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))
print([(f["id"], f["kind"], f["http_status"], f["attempts"], f["repollable"]) for f in d["failed"]], d["repollable"], d["failures_by_kind"])' "$T/out")" \
    "[('job-p1', 'server', 503, 1, True), ('job-p2', 'server', 503, 1, True), ('job-p3', 'server', 503, 1, True)] 3 {'server': 3}" "status --json: each failed job's kind, status, attempts, and that it can be polled again"
run "$SEEDBATCH" run --dry-run --retry-failed "$D/m.yaml"; expect_rc 0 "dry run"
expect_in "$T/out" "0 to submit, 3 to resume" "the plan resumes them, quotes nothing"
run "$SEEDBATCH" run --retry-failed=server "$D/m.yaml"; expect_rc 0 "--retry-failed=server"
expect_eq "$(grep -c '"status":"succeeded"' "$R")" 3 "the three succeeded"
expect_eq "$(stat_of submissions)" 3 "polled again, not submitted (and paid for) again"
expect_eq "$(results_field "$R" job-p2 cost_usd)" 0.064 "each paid once"
stop_mock
# A job whose every submit lost its answer fails flagged; submitted again by --retry-failed,
# it stays flagged: the provider may have billed those it never answered.
# (A remote image: the submit opens each connection, so libcurl never resends it by itself.)
D=$T/lostall; mkdir -p "$D"
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\noutput_dir: out\nlimits: {concurrency: 1, requests_per_second: 0, poll_interval: 200ms, max_attempts: 2}\njobs:\n  - {id: job-p1, prompt: "lost twice", images: ["https://cdn.example.com/p1.jpg"]}\n' > "$D/m.yaml"
start_mock --key "$KEY" --latency 100 --fault submit:lost:#2; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 1 "two lost submits fail the job"
R=$D/out/results.jsonl
expect_eq "$(results_field "$R" job-p1 possible_duplicate)" true "flagged"
run "$SEEDBATCH" run --retry-failed "$D/m.yaml"; expect_rc 0 "submitted again"
expect_eq "$(stat_of submissions)" 3 "three predictions made for it"
expect_eq "$(results_field "$R" job-p1 possible_duplicate)" true "still flagged"
expect_eq "$(unflagged_duplicates "$R")" 0 "duplicates only where flagged"
stop_mock
# The same when the outputs could not be fetched (the prediction's cost was counted then).
D=$T/redl; make_batch "$D" 3
sed -i 's/poll_interval: 200ms, max_attempts: 8/poll_interval: 200ms, max_attempts: 2, download_patience: 1s/' "$D/m.yaml"
start_mock --key "$KEY" --latency 100 --fault download:503:1; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 1 "downloads answered 503 fail their jobs"
R=$D/out/results.jsonl
expect_eq "$(grep -c '"kind":"server"' "$R")" 3 "three failed as server"
expect_eq "$(results_field "$R" job-p2 cost_usd)" 0.064 "the prediction made is counted"
curl -s -X POST "$MOCK_URL/_mock/faults/clear" >/dev/null
run "$SEEDBATCH" run --retry-failed "$D/m.yaml"; expect_rc 0 "--retry-failed"
expect_eq "$(grep -c '"status":"succeeded"' "$R")" 3 "the three succeeded"
expect_eq "$(ls "$D/out" | grep -c '^job-p[0-9]_[12]\.png$')" 6 "their outputs written"
expect_eq "$(stat_of submissions)" 3 "polled again, not submitted again"
expect_eq "$(results_field "$R" job-p2 cost_usd)" 0.064 "and counted once"
stop_mock

# An output cut off on a connection that gave no length ends cleanly: never written as it
# came; downloaded again whole.
D=$T/cut; make_batch "$D" 3
printf '  - {id: jpg, prompt: "as jpeg", images: [img/logo.png], params: {output_format: jpeg}}\n' >> "$D/m.yaml"
start_mock --key "$KEY" --latency 100 --fault download:cut:#5; use_mock
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "outputs cut short are downloaded again"
expect_eq "$(stat_of faults.cut)" 5 "five outputs cut short, with a clean end"
expect_eq "$(stat_of requests.download)" 13 "each downloaded again: 8 outputs, 5 twice"
expect_eq "$(stat_of submissions)" 4 "no job paid twice for it"
check_outputs "$D/out/results.jsonl" "$D/out"
stop_mock

# --- 10. key hygiene: not in logs, state, results or outputs ---
grep -rl -- "$KEY" "$T" --include='*' 2>/dev/null | grep -v '/err$\|/out$' > "$T/keyfiles" || true
expect_eq "$(wc -l < "$T/keyfiles")" 0 "key absent from every file written"
start_mock --key "$KEY"; use_mock
rm -rf "$T/clean/out"
run "$SEEDBATCH" run --debug --log-format json "$T/clean/m.yaml"; expect_rc 0 "debug run"
expect_in "$T/err" 'curl > Authorization: [redacted]' "debug mode traces headers, key redacted"
expect_not_in "$T/err" "$KEY" "key absent from debug json logs"
python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$T/err" && pass || fail "json log lines"
expect_in "$T/err" "commits (their fsync on a worker thread)" "commit timing reported"
sqlite3 "$T/clean/out/.seedbatch/state.db" .dump | grep -c -- "$KEY" > "$T/n" || true
expect_eq "$(cat "$T/n")" 0 "key absent from the state database"
# --progress always draws the live line (predictions take 0.8 s, the line is redrawn every 0.25 s).
stop_mock; start_mock --key "$KEY" --latency 800; use_mock
rm -rf "$T/clean/out"
run "$SEEDBATCH" run --progress always "$T/clean/m.yaml"; expect_rc 0 "progress run"
expect_in "$T/err" " ok, 0 failed" "progress line"
stop_mock

finish
