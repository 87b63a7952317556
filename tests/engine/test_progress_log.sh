#!/usr/bin/env bash
# Without a terminal, progress is a log line every 30 s (and no live line).
. "$(dirname "$0")/../lib.sh"
export ATLASCLOUD_API_KEY=test-key
mkdir -p "$T/img"
"$GEN_IMAGE" png 48 48 "$T/img/a.png"
cat > "$T/m.yaml" <<EOF2
version: 1
provider: atlascloud
model: bytedance/seedream-v5.0-lite/edit-sequential
output_dir: slow.out
limits: {poll_interval: 500ms}
jobs:
  - {id: slow, prompt: "takes a while", images: [img/a.png]}
EOF2
start_mock --latency 33000
export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"
run "$SEEDBATCH" run "$T/m.yaml"; expect_rc 0 "slow run"
expect_in "$T/err" "progress: 0/1 done, 0 succeeded, 0 failed, 1 running" "a progress log line after 30 s"
expect_not_in "$T/err" $'\r' "no live line without a terminal"
expect_eq "$(grep -c 'progress:' "$T/err")" 1 "one line per 30 s"
# A count of one is said in the singular.
expect_in "$T/err" "m.yaml: 1 job: 1 succeeded, 0 failed, 0 pending, 0 running, 0 cancelled; 1 image written;" "summary of one job"
expect_in "$T/err" "API calls: 1 submit, " "one submit"
expect_in "$T/err" " polls, 1 upload (" "one upload"
# Text log lines carry the time (ISO 8601, UTC) when stderr is no terminal: every line.
expect_eq "$(grep -cvE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z seedbatch: ' "$T/err")" 0 "every text line starts with its time"
stop_mock

# JSON log lines carry what they are about: a failed job's event, manifest, job, state,
# kind, HTTP status and attempt; a pause of 10 s or more is logged as it begins.
start_mock --fault submit:400:1
export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"
sed -i 's/output_dir: slow.out/output_dir: bad.out/' "$T/m.yaml"
run "$SEEDBATCH" run --log-format json "$T/m.yaml"; expect_rc 1 "a rejected job"
python3 - "$T/err" "$T/m.yaml" > "$T/check" <<'EOF2'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
f = [l for l in lines if l.get("event") == "job_failed"]
print(len(f), all(set(l) >= {"time", "level", "msg"} for l in lines))
if f:
    e = f[0]
    print(e["manifest"] == sys.argv[2], e["job"], e["state"], e["kind"], e["http_status"], e["attempt"], e["level"])
EOF2
expect_eq "$(head -1 "$T/check")" "1 True" "json: one job_failed event; every line has time, level, msg"
expect_eq "$(sed -n 2p "$T/check")" "True slow failed invalid_input 400 1 warning" "json: the event's fields"
stop_mock
start_mock --fault submit:429ra:1 --retry-after 12
export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"
sed -i 's/output_dir: bad.out/output_dir: paused.out/' "$T/m.yaml"
"$SEEDBATCH" run --log-format json "$T/m.yaml" >/dev/null 2>"$T/err" & pid=$!
for _ in $(seq 1 100); do grep -q '"event":"pause"' "$T/err" && break; sleep 0.1; done
kill -TERM $pid; wait $pid
python3 -c 'import json, sys
p = [json.loads(l) for l in open(sys.argv[1]) if "\"pause\"" in l]
print(len(p), p[0]["msg"] if p else "")' "$T/err" > "$T/check"
expect_eq "$(cat "$T/check")" "1 Atlas Cloud: calls paused for 12s: rate limited (Retry-After)" "a 12 s Retry-After is logged as it begins"
finish
