#!/usr/bin/env bash
# One end-to-end run (uploads, submits, polls, downloads, results) under valgrind:
# no invalid access, no use of uninitialised memory, nothing definitely lost.
. "$(dirname "$0")/../lib.sh"
export ATLASCLOUD_API_KEY=vg-key
mkdir -p "$T/img"
for i in 1 2 3; do "$GEN_IMAGE" jpeg 64 80 "$T/img/p$i.jpg" "$i"; done
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\noutput_dir: vg.out\ndefaults: {max_images: 2}\nlimits: {poll_interval: 100ms}\njobs:\n  - foreach: "img/p*.jpg"\n    id: "job-{stem}"\n    prompt: "Edit {name}"\n    images: ["{path}"]\n' > "$T/m.yaml"
start_mock --key vg-key --latency 200 --fault any:503:0.2 --seed 2
export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"
run valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite "$SEEDBATCH" run "$T/m.yaml"
expect_rc 0 "run under valgrind (99 would be a valgrind error)"
expect_in "$T/err" "ERROR SUMMARY: 0 errors" "valgrind reports no error"
expect_eq "$(grep -c '"status":"succeeded"' "$T/vg.out/results.jsonl")" 3 "the run did its work"
stop_mock
finish
