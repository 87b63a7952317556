#!/usr/bin/env bash
# The providers' real dialects (../shared/API.md, "What the providers' own clients
# show"): 100-job batches on both providers against a mock mixing every variant,
# each job ending as its prompt says it must, within a bound of calls; a stuck
# prediction's calls on the back-off schedule; verdicts in 5xx answers; the key's
# other environment names; RunComfy's image budget with auto.
. "$(dirname "$0")/../lib.sh"

KEY="dialect-key-$$"
JOB_TIMEOUT_MS=4000
POLL_MS=200

# batch FILE PROVIDER N: a manifest of N jobs whose prompts pick their outcome at the mock:
# every 10th from 1 fails, from 2 fails with the status timeout, from 3 has every output
# withheld by the content filter (Atlas), from 4 its first only (Atlas), from 5 is stuck.
batch() {
    local f=$1 provider=$2 n=$3 model defaults images
    if [ "$provider" = atlascloud ]; then
        model=bytedance/seedream-v5.0-lite/edit-sequential
        defaults="{max_images: 2, output_format: png}"
    else
        model=bytedance/seedream-5/lite/edit
        defaults="{sequential_image_generation: auto, max_images: 2, output_format: png}"
    fi
    {
        echo "version: 1"
        echo "provider: $provider"
        echo "model: $model"
        echo "output_dir: out-$provider"
        echo "defaults: $defaults"
        echo "limits: {concurrency: 32, requests_per_second: 0, poll_interval: ${POLL_MS}ms, job_timeout: ${JOB_TIMEOUT_MS}ms, max_attempts: 4}"
        echo "jobs:"
        for i in $(seq 1 "$n"); do
            case $((i % 10)) in
            1) t=" mock:fail" ;; 2) t=" mock:timeout" ;; 3) t=" mock:nsfw" ;; 4) t=" mock:nsfw1" ;;
            5) t=" mock:stuck" ;; *) t="" ;;
            esac
            images="\"https://cdn.example.com/p$i.png\""
            [ "$provider" = atlascloud ] && images="img/a.png, $images"
            echo "  - {id: j$i, prompt: \"edit $i$t\", images: [$images]}"
        done
    } > "$f"
}

# outcomes RESULTS: a sorted line per kind of ending: status, error kind, outputs written.
outcomes() {
    python3 - "$1" <<'PY'
import json, sys, collections
c = collections.Counter()
for l in open(sys.argv[1]):
    r = json.loads(l)
    c["%s %s %d" % (r["status"], (r["error"] or {}).get("kind") or "-", len(r["outputs"]))] += 1
for k in sorted(c):
    print(k, c[k])
PY
}

# looks T_MS: how many times a job may look at its prediction within T ms on the back-off
# schedule (the first look after poll_interval, then x1.5 each time, capped at 15 s).
looks() {
    python3 -c '
import sys
t, step, at, n = int(sys.argv[1]), int(sys.argv[2]), 0, 0
while True:
    at += step if n else int(sys.argv[2])
    if at > t: break
    n += 1
    if n > 1: step = min(int(step * 1.5), 15000)
print(n)' "$1" "$POLL_MS"
}
# The bound on a job's calls to the status or result endpoints: its looks, and at most
# three calls in a row brought forward by a state change.
BOUND=$(( $(looks "$JOB_TIMEOUT_MS") + 3 ))

mkdir -p "$T/img" && "$GEN_IMAGE" png 64 64 "$T/img/a.png" 1

# --- 1. Atlas: 100 jobs, every variant mixed ---
batch "$T/atlas.yaml" atlascloud 100
start_mock --key "$KEY" --latency 1000 --seed 11 --dialect all
ATLASCLOUD_API_KEY="$KEY" ATLASCLOUD_BASE_URL="$MOCK_URL" run "$SEEDBATCH" run --progress never "$T/atlas.yaml"
expect_rc 1 "Atlas mixed dialect: finished with the failures its prompts ask for"
R=$T/out-atlascloud/results.jsonl
expect_eq "$(outcomes "$R" | tr '\n' ';')" \
    "failed rejected 0 20;failed timeout 0 20;succeeded - 1 10;succeeded - 2 50;" \
    "Atlas: every job ended as its prompt says (withheld ones fail rejected, stuck ones time out)"
expect_eq "$(stat_of submissions)" 100 "Atlas: one submit per job"
expect_eq "$(stat_of withheld_downloads)" 0 "Atlas: no output the content filter withheld was fetched"
m=$(results_field "$R" j3 error.message)
expect_eq "${m,,}" "prediction completed, but its 2 outputs were withheld by the content filter (has_nsfw_contents)" "Atlas: withheld, said so"
expect_eq "$(results_field "$R" j4 outputs)" '["j4_1.png"]' "Atlas: one output withheld, the other written"
# (The words come in any case: the messages quote them as they came.)
m=$(results_field "$R" j2 error.message)   # "HTTP 500: " before it when the verdict came in a 5xx
case "${m,,}" in *"prediction timeout: generation timed out") pass ;; *) fail "Atlas: status timeout: '$m'" ;; esac
expect_eq "$(results_field "$R" j2 error.kind)" timeout "Atlas: status timeout is kind timeout"
expect_eq "$(results_field "$R" j1 error.code)" 1039 "Atlas: the provider's code kept (string or object error, 200 or 500)"
m=$(results_field "$R" j5 error.message)
expect_eq "${m,,}" 'the prediction was still running at job_timeout (its last status: "completed", with no output listed)' "Atlas: stuck"
n=$(stat_of max_prediction_calls)
[ "$n" -le "$BOUND" ] && pass || fail "Atlas: a prediction was looked at $n times, bound $BOUND"
expect_eq "$(grep -c 'which seedbatch does not know' "$T/err")" 1 "Atlas: an unknown status word said once a run"
grep -qi 'answered the status "warming_up"' "$T/err" && pass || fail "Atlas: the unknown word named"
check_outputs "$R" "$T/out-atlascloud"
stop_mock

# --- 2. RunComfy: 100 jobs, every variant mixed, two submits refused with a 422 detail array ---
batch "$T/rc.yaml" runcomfy 100
start_mock --key "$KEY" --latency 1000 --seed 12 --dialect all --fault rc_submit:422:#2
RUNCOMFY_API_TOKEN="$KEY" RUNCOMFY_BASE_URL="$MOCK_URL" run "$SEEDBATCH" run --progress never "$T/rc.yaml"
expect_rc 1 "RunComfy mixed dialect"
R=$T/out-runcomfy/results.jsonl
# j1 and j2 are refused (the first two submits); nsfw prompts mean nothing to RunComfy.
expect_eq "$(outcomes "$R" | tr '\n' ';')" \
    "failed invalid_input 0 2;failed rejected 0 9;failed timeout 0 19;succeeded - 2 70;" \
    "RunComfy: every job ended as its prompt says (completed results succeed, 400005 waits, stuck times out)"
expect_eq "$(results_field "$R" j1 error.message)" "HTTP 422: image: injected: URL must be https" "422 detail array read"
expect_eq "$(stat_of submissions)" 98 "RunComfy: one submit per job taken"
n=$(stat_of max_prediction_calls)
[ "$n" -le "$BOUND" ] && pass || fail "RunComfy: a prediction was called $n times, bound $BOUND"
expect_eq "$(grep -c 'which seedbatch does not know' "$T/err")" 1 "RunComfy: an unknown word said once, in any case"
check_outputs "$R" "$T/out-runcomfy"
stop_mock

# --- 3. "completed" forever on both RunComfy calls: calls on the back-off schedule, then timeout ---
cat > "$T/stuck.yaml" <<EOF
version: 1
provider: runcomfy
model: bytedance/seedream-5/lite/edit
output_dir: out-stuck
limits: {concurrency: 4, requests_per_second: 0, poll_interval: 300ms, job_timeout: 5s}
jobs:
  - {id: stuck, prompt: "never done mock:stuck", images: ["https://cdn.example.com/s.png"]}
  - {id: ok1, prompt: "fine", images: ["https://cdn.example.com/1.png"]}
  - {id: ok2, prompt: "fine too", images: ["https://cdn.example.com/2.png"]}
EOF
start_mock --key "$KEY" --latency 500
RUNCOMFY_API_TOKEN="$KEY" RUNCOMFY_BASE_URL="$MOCK_URL" run "$SEEDBATCH" run --progress never "$T/stuck.yaml"
expect_rc 1 "a stuck prediction fails, the run goes on"
R=$T/out-stuck/results.jsonl
expect_eq "$(results_field "$R" stuck error.kind)" timeout "stuck: kind timeout"
expect_eq "$(results_field "$R" ok1 status)/$(results_field "$R" ok2 status)" succeeded/succeeded "the others succeed"
curl -s "$MOCK_URL/_mock/stats" > "$T/stats.json"
PID=$(results_field "$R" stuck prediction_id)
# The calls: every look is a result call (it answers "completed" with no output here),
# on the back-off schedule (300 ms x1.5 each time), none brought forward, none after job_timeout.
python3 - "$T/stats.json" "$PID" <<'PY' > "$T/sched"
import json, sys
ms = json.load(open(sys.argv[1]))["prediction_calls"][sys.argv[2]]["ms"]
gaps = [b - a for a, b in zip(ms, ms[1:])]
fast = sum(1 for g in gaps if g < 100)
want, ok = 300, True
for g in [g for g in gaps if g >= 100][1:]:
    want = min(int(want * 1.5), 15000)
    ok = ok and g >= want * 0.9
print(len(ms), fast, "on-schedule" if ok else "off-schedule %s" % gaps, "in-time" if ms[-1] <= 5000 else "late %d" % ms[-1])
PY
read -r calls fast sched when < "$T/sched"
[ "$calls" -ge 5 ] && [ "$calls" -le "$(( $(POLL_MS=300 looks 5000) + 3 ))" ] && pass || fail "stuck: $calls calls"
expect_eq "$fast" 0 "stuck: no call brought forward (each look is the result call already)"
expect_eq "$(stat_of requests.rc_status)" 0 "the status call is not needed: each look is one result call"
expect_eq "$sched" on-schedule "stuck: the rest wait their back-off"
expect_eq "$when" in-time "stuck: no call after job_timeout"
stop_mock

# --- 4. an Atlas verdict in a 5xx answer is final: not retried ---
cat > "$T/verdict.yaml" <<EOF
version: 1
provider: atlascloud
model: bytedance/seedream-v5.0-lite/edit-sequential
output_dir: out-verdict
limits: {concurrency: 4, requests_per_second: 0, poll_interval: 200ms, max_attempts: 6}
jobs:
  - {id: v1, prompt: "no mock:fail", images: ["https://cdn.example.com/v1.png"]}
  - {id: v2, prompt: "late mock:timeout", images: ["https://cdn.example.com/v2.png"]}
  - {id: v3, prompt: "fine", images: ["https://cdn.example.com/v3.png"]}
EOF
start_mock --key "$KEY" --latency 300 --dialect verdict,errobj,case
ATLASCLOUD_API_KEY="$KEY" ATLASCLOUD_BASE_URL="$MOCK_URL" run "$SEEDBATCH" run --progress never "$T/verdict.yaml"
expect_rc 1 "verdicts fail their jobs"
R=$T/out-verdict/results.jsonl
expect_eq "$(results_field "$R" v1 error.kind)/$(results_field "$R" v1 error.http_status)/$(results_field "$R" v1 error.code)" \
    rejected/500/1039 "HTTP 500 with data.status failed: rejected, the provider's code"
expect_eq "$(results_field "$R" v1 error.message)" \
    "HTTP 500: prediction FAILED: The request was rejected by content moderation" "the provider's message (an error object)"
expect_eq "$(results_field "$R" v2 error.kind)" timeout "HTTP 500 with data.status timeout: kind timeout"
expect_eq "$(results_field "$R" v3 status)" succeeded "upper-case words read"
curl -s "$MOCK_URL/_mock/stats" > "$T/stats.json"
for id in v1 v2; do
    after=$(python3 -c '
import json, sys
ms = json.load(open(sys.argv[1]))["prediction_calls"][sys.argv[2]]["ms"]
print(sum(1 for m in ms if m >= 300))' "$T/stats.json" "$(results_field "$R" $id prediction_id)")
    expect_eq "$after" 1 "$id: the verdict asked for once, never retried"
done
stop_mock

# --- 5. RunComfy's other key names, read in a documented order ---
D=$T/keys; mkdir -p "$D"
printf 'version: 1\nprovider: runcomfy\nmodel: bytedance/seedream-5/lite/edit\noutput_dir: out\nlimits: {requests_per_second: 0, poll_interval: 100ms}\njobs:\n  - {id: k1, prompt: "key", images: ["https://cdn.example.com/k.png"]}\n' > "$D/m.yaml"
start_mock --key "$KEY" --latency 100
for name in RUNCOMFY_API_TOKEN RUNCOMFY_API_KEY RUNCOMFY_TOKEN; do
    rm -rf "$D/out"
    env -u RUNCOMFY_API_TOKEN -u RUNCOMFY_API_KEY -u RUNCOMFY_TOKEN "$name=$KEY" RUNCOMFY_BASE_URL="$MOCK_URL" \
        "$SEEDBATCH" run --progress never "$D/m.yaml" >"$T/out" 2>"$T/err"; RC=$?
    expect_rc 0 "the key in $name"
done
# The first one set wins: RUNCOMFY_API_TOKEN, then RUNCOMFY_API_KEY, then RUNCOMFY_TOKEN.
rm -rf "$D/out"
env -u RUNCOMFY_API_TOKEN RUNCOMFY_API_KEY=wrong-key RUNCOMFY_TOKEN="$KEY" RUNCOMFY_BASE_URL="$MOCK_URL" \
    "$SEEDBATCH" run --progress never "$D/m.yaml" >"$T/out" 2>"$T/err"; RC=$?
expect_rc 3 "RUNCOMFY_API_KEY is read before RUNCOMFY_TOKEN"
rm -rf "$D/out"
env RUNCOMFY_API_TOKEN="$KEY" RUNCOMFY_API_KEY=wrong-key RUNCOMFY_BASE_URL="$MOCK_URL" \
    "$SEEDBATCH" run --progress never "$D/m.yaml" >"$T/out" 2>"$T/err"; RC=$?
expect_rc 0 "RUNCOMFY_API_TOKEN is read first"
stop_mock
env -u RUNCOMFY_API_TOKEN -u RUNCOMFY_API_KEY -u RUNCOMFY_TOKEN "$SEEDBATCH" run "$D/m.yaml" >"$T/out" 2>"$T/err"; RC=$?
expect_rc 2 "no RunComfy key"
expect_in "$T/err" "no API key: set RUNCOMFY_API_TOKEN (or RUNCOMFY_API_KEY, RUNCOMFY_TOKEN) or api_key_file in the manifest" \
    "every name said"

# --- 6. RunComfy: auto with no max_images is budgeted 15 images; max_images without auto warns ---
printf 'version: 1\nprovider: runcomfy\nmodel: bytedance/seedream-5/lite/edit\noutput_dir: out\nprice_per_image: 0.1\ndefaults: {sequential_image_generation: auto}\nlimits: {max_cost: 2.0}\njobs:\n  - {id: a1, prompt: "up to 15", images: ["https://cdn.example.com/a.png"]}\n  - {id: a2, prompt: "one", images: ["https://cdn.example.com/b.png"], params: {sequential_image_generation: disabled, max_images: 4}}\n' > "$D/auto.yaml"
run "$SEEDBATCH" validate "$D/auto.yaml"; expect_rc 0 "max_images without auto is no error"
expect_in "$T/err" "max_images is ignored by the API without sequential_image_generation: auto" "... but a warning"
expect_in "$T/out" "up to 16 output images" "auto with no max_images counted as 15 (and 1)"
RUNCOMFY_API_TOKEN="$KEY" run "$SEEDBATCH" run --dry-run "$D/auto.yaml"; expect_rc 0 "dry run"
expect_in "$T/out" 'cost quote: 16 images x $0.1000 = $1.60' "quoted as 15 + 1"

# --- 7. uploads that went stale: a restarted provider forgets them and refuses their URLs ---
D=$T/stale; mkdir -p "$D/img"
for f in a b c; do "$GEN_IMAGE" png 64 64 "$D/img/$f.png" "$(printf '%d' "'$f")"; done
stale_manifest() { # stale_manifest FILE OUTDIR [extra limits] JOB...
    local f=$1 out=$2 lim=$3; shift 3
    {
        printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\n'
        printf 'output_dir: %s\nlimits: {requests_per_second: 0, poll_interval: 100ms%s}\njobs:\n' "$out" "$lim"
        for j in "$@"; do echo "  - $j"; done
    } > "$f"
}
export ATLASCLOUD_API_KEY="$KEY"
stale_manifest "$D/m.yaml" out "" "{id: s1, prompt: one, images: [img/a.png]}" "{id: s2, prompt: two, images: [img/b.png]}"
start_mock --key "$KEY" --latency 100; PORT=${MOCK_URL##*:}; export ATLASCLOUD_BASE_URL="$MOCK_URL"
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "stale: the first run"
expect_eq "$(stat_of uploads)" 2 "stale: two files uploaded"
stop_mock
# A new job uses a.png (cached) and c.png (new); the provider restarted and forgot a.png.
stale_manifest "$D/m.yaml" out "" "{id: s1, prompt: one, images: [img/a.png]}" "{id: s2, prompt: two, images: [img/b.png]}" \
    "{id: s3, prompt: three, images: [img/a.png, img/c.png]}"
start_mock --key "$KEY" --latency 100 --port "$PORT"
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "stale: a cached upload refused is uploaded again"
expect_eq "$(stat_of requests.submit)/$(stat_of submissions)" 2/1 "stale: the refused submit, then one prediction"
expect_eq "$(stat_of uploads)/$(stat_of distinct_uploads)" 2/2 "stale: a.png again, c.png new"
expect_eq "$(results_field "$D/out/results.jsonl" s3 status)" succeeded "stale: the job succeeded"
expect_in "$T/err" "job s3: the submit was refused (HTTP 400: an image URL is not accessible); 1 of its reference images used upload URLs of an earlier run" "stale: said why"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) FROM uploads WHERE url LIKE '$MOCK_URL/files/%'")" 3 "stale: the cache holds the new URLs"
stop_mock
# A refused submit whose URLs are this run's own is no stale upload: failed as before, once.
stale_manifest "$D/q.yaml" qout "" "{id: q1, prompt: refused, images: [img/a.png]}"
start_mock --key "$KEY" --latency 100 --port "$PORT" --fault submit:400:#1
run "$SEEDBATCH" run --progress never "$D/q.yaml"; expect_rc 1 "stale: a 400 with fresh uploads fails the job"
expect_eq "$(stat_of requests.submit)/$(stat_of uploads)" 1/1 "stale: not submitted again"
stop_mock
# --retry-failed uploads the re-queued job's files again (the restarted provider forgot them).
stale_manifest "$D/r.yaml" rout ", max_attempts: 1" "{id: r1, prompt: retry, images: [img/a.png, img/b.png]}"
start_mock --key "$KEY" --latency 100 --port "$PORT" --fault submit:503:#1
run "$SEEDBATCH" run --progress never "$D/r.yaml"; expect_rc 1 "stale: a 503 with max_attempts 1 fails the job"
expect_eq "$(stat_of uploads)/$(stat_of predictions)" 2/0 "stale: uploaded, nothing made"
stop_mock
start_mock --key "$KEY" --latency 100 --port "$PORT"
run "$SEEDBATCH" run --progress never --retry-failed "$D/r.yaml"; expect_rc 0 "stale: --retry-failed"
expect_eq "$(stat_of requests.submit)/$(stat_of submissions)/$(stat_of uploads)" 1/1/2 "stale: uploaded again before the one submit"
stop_mock
# The TTL is checked when a job uses an upload: one made at the start of a long run is made again.
stale_manifest "$D/t.yaml" tout ", concurrency: 1" "{id: t1, prompt: first, images: [img/a.png]}" "{id: t2, prompt: second, images: [img/a.png]}"
printf 'media: {upload_ttl: 1s}\n' >> "$D/t.yaml"
start_mock --key "$KEY" --latency 1500
export ATLASCLOUD_BASE_URL="$MOCK_URL"
run "$SEEDBATCH" run --progress never "$D/t.yaml"; expect_rc 0 "stale: TTL at use"
expect_eq "$(stat_of uploads)/$(stat_of distinct_uploads)" 2/1 "stale: the file uploaded again once its upload was older than upload_ttl"
stop_mock

finish
