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
finish
