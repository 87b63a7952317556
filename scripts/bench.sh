#!/usr/bin/env bash
# Benchmark: seedbatch against the bundled mock API with zero processing time.
# Prints jobs/s, CPU time per job, peak RSS, API calls per job and state commits.
#   scripts/bench.sh [JOBS...]        default: 10000
# Not a test: figures depend on the machine. Needs /usr/bin/time (package time).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/seedbatch ] && [ -x build/mockapi ] || bash scripts/setup.sh >/dev/null
command -v /usr/bin/time >/dev/null || { echo "bench.sh needs /usr/bin/time (apt-get install time)"; exit 2; }
SIZES=("$@"); [ ${#SIZES[@]} -gt 0 ] || SIZES=(10000)
CONC=${CONC:-256}
tmp=$(mktemp -d)
mock=""
trap '[ -n "$mock" ] && kill $mock 2>/dev/null; rm -rf "$tmp"' EXIT

build/tests/gen_image jpeg 64 64 "$tmp/a.jpg" 1 2>/dev/null || true
printf '%-8s %10s %12s %14s %12s %14s %10s %10s\n' jobs seconds jobs/s "cpu ms/job" "peak RSS" "api calls/job" refused commits
for n in "${SIZES[@]}"; do
    d=$tmp/run$n; mkdir -p "$d"
    python3 - "$d/m.yaml" "$n" "$CONC" <<'PY'
import sys
path, n, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "w") as f:
    f.write("version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\n")
    f.write("output_dir: out\ndefaults: {max_images: 1, output_format: jpeg}\n")
    f.write(f"limits: {{concurrency: {conc}, requests_per_second: 0, poll_interval: 100ms}}\njobs:\n")
    for i in range(n):
        f.write(f'  - {{id: j{i}, prompt: "bench {i}", images: ["http://127.0.0.1/in/{i}.jpg"]}}\n')
PY
    build/mockapi --port-file "$d/port" --latency 0 --no-variants --threads 1 >"$d/mock.log" 2>&1 &
    mock=$!
    for _ in $(seq 1 200); do [ -s "$d/port" ] && break; sleep 0.02; done
    url="http://127.0.0.1:$(cat "$d/port")"
    ATLASCLOUD_BASE_URL="$url/api/v1" ATLASCLOUD_API_KEY=test-key \
        /usr/bin/time -f '%e %U %S %M' -o "$d/time" build/seedbatch run --debug --progress never "$d/m.yaml" \
        >/dev/null 2>"$d/log" || { echo "run failed:"; grep -v 'curl ' "$d/log" | tail -5; exit 1; }
    read -r el user sys rss < "$d/time"
    stats=$(curl -s "$url/_mock/stats")
    api=$(echo "$stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_requests"])')
    refused=$(echo "$stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["refused_rate"])')
    commits=$(grep -o 'state: [0-9]* commits' "$d/log" | grep -o '[0-9]*' || echo "?")
    grep -o 'state: .*' "$d/log" | sed 's/"}$//' > "$d/commitline" || true
    python3 - "$n" "$el" "$user" "$sys" "$rss" "$api" "$refused" "$commits" <<'PY'
import sys
n, el, user, sys_, rss, api, refused, commits = sys.argv[1:]
n = int(n); el = float(el); cpu = float(user) + float(sys_)
print(f"{n:<8} {el:>10.2f} {n/el:>12.0f} {cpu*1000/n:>14.3f} {int(rss)/1024:>10.1f}MiB {int(api)/n:>14.2f} {refused:>10} {commits:>10}")
PY
    sed 's/^/         /' "$d/commitline"
    kill $mock; wait $mock 2>/dev/null || true; mock=""
done
