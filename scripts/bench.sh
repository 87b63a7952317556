#!/usr/bin/env bash
# Benchmark: seedbatch and a Python asyncio + aiohttp runner (scripts/bench_peer.py,
# Debian's python3-aiohttp and python3-yaml) do the same batch, from the same manifest,
# against the bundled mock API with zero processing time, same concurrency and poll interval. Prints a table: jobs/s, CPU
# time per job (and its user/kernel parts), peak RSS, API calls per job, rate refusals,
# state commits; each the median of REPEAT runs in which the two runners
# alternate, with each run's CPU per job after it (the machines are shared: single
# runs vary by 10-30%).
#   scripts/bench.sh [JOBS...]          default: 10000 100000
#   CONC=256 POLL=0.1 REPEAT=3 BENCH_DIR=/dev/shm scripts/bench.sh 10000
#   PEERS="manifest code" scripts/bench.sh 10000  also a Python runner that makes the jobs
#                                       in code and writes no results (the protocol alone)
#   BENCH_TLS=1 scripts/bench.sh 10000  both runners over https through nghttpx (a TLS and
#                                       HTTP/2 proxy) in front of the mock, as an API is
#                                       reached in production; the proxy's CPU is not counted
# Work files go under BENCH_DIR (default /dev/shm: tmpfs, so the figures compare the
# runners rather than a disk). Not a test: figures depend on the machine.
#   SET=makespan|report|cpu|all (default all): the makespan set first (scripts/bench_makespan.sh:
#   wall time under a rate limit against the bound of the calls the batch needs, beside a
#   rate-limited Python runner), the review page's (scripts/bench_report.sh: writing a
#   1,000-job report.html, Chromium's first paint of it), then this CPU set (zero processing
#   time, no rate limit).
set -euo pipefail
cd "$(dirname "$0")/.."
# Measured as users build it (RelWithDebInfo, -O2), in its own directory whatever build/ is.
BUILD_DIR=build-bench BUILD_TYPE=RelWithDebInfo bash scripts/setup.sh >/dev/null
bash scripts/apt-install.sh python3 python3-aiohttp python3-yaml time sqlite3 >/dev/null
SET=${SET:-all}
if [ "$SET" = makespan ] || [ "$SET" = all ]; then
    echo "== makespan under the rate limit"
    bash scripts/bench_makespan.sh
    [ "$SET" = makespan ] && exit 0
fi
if [ "$SET" = report ] || [ "$SET" = all ]; then
    echo "== the review page"
    bash scripts/bench_report.sh
    [ "$SET" = report ] && exit 0
fi
[ "$SET" = all ] && echo "== CPU per job (no processing time, no rate limit)"
SIZES=("$@"); [ ${#SIZES[@]} -gt 0 ] || SIZES=(10000 100000)
CONC=${CONC:-256}
# Runs of each runner per size, alternated; medians are printed. Unless REPEAT is set:
# 9 for batches up to 20,000 jobs (a run takes seconds, and short runs vary most), else 5.
REPEAT_SET=${REPEAT:-}
# The Python runners: "manifest" reads the manifest seedbatch is given and writes a result
# line per job, as a user's script would; "code" makes the same jobs in code and writes no
# results (the protocol alone). PEERS="manifest code" runs both.
PEERS=${PEERS:-manifest}
POLL=${POLL:-0.1}
BASE_DIR=${BENCH_DIR:-/dev/shm}
[ -d "$BASE_DIR" ] && [ -w "$BASE_DIR" ] || BASE_DIR=/tmp
tmp=$(mktemp -d "$BASE_DIR/sbbench.XXXXXX")
mock=""
trap '[ -n "$mock" ] && kill $mock 2>/dev/null; [ -n "${proxy:-}" ] && kill $proxy 2>/dev/null; rm -rf "$tmp"' EXIT

TLS=${BENCH_TLS:-0}
proxy=""
ca_env=()
if [ "$TLS" = 1 ]; then
    ca_env=(CURL_CA_BUNDLE="$tmp/cert.pem" SSL_CERT_FILE="$tmp/cert.pem")
    command -v nghttpx >/dev/null || { echo "BENCH_TLS=1 needs nghttpx (apt-get install nghttp2-proxy)"; exit 2; }
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 1 \
        -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1
fi
# start_mock: a fresh mock; url is where the stats are read, run_url what the runners call.
start_mock() {
    rm -f "$tmp/port"
    local origin=() px=""
    if [ "$TLS" = 1 ]; then
        px=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        origin=(--public-origin "https://127.0.0.1:$px")
    fi
    build-bench/mockapi --port-file "$tmp/port" --latency 0 --no-variants --threads 1 "${origin[@]}" >"$tmp/mock.log" 2>&1 &
    mock=$!
    for _ in $(seq 1 200); do [ -s "$tmp/port" ] && break; sleep 0.02; done
    url="http://127.0.0.1:$(cat "$tmp/port")"
    run_url=$url
    if [ "$TLS" = 1 ]; then
        # The proxy keeps up to 512 connections to the mock: the Python runner's HTTP/1.1
        # connections each need one.
        nghttpx --conf=/dev/null --frontend="127.0.0.1,$px" --backend="127.0.0.1,$(cat "$tmp/port")" \
            --workers=1 --no-ocsp --backend-connections-per-host=512 --errorlog-file="$tmp/nx.err" \
            "$tmp/key.pem" "$tmp/cert.pem" 2>>"$tmp/nx.err" &
        proxy=$!
        run_url="https://127.0.0.1:$px"
        for _ in $(seq 1 200); do curl -s -o /dev/null --cacert "$tmp/cert.pem" "$run_url/_mock/stats" && break; sleep 0.02; done
    fi
}
stop_mock() {
    [ -n "$proxy" ] && { kill $proxy; wait $proxy 2>/dev/null || true; proxy=""; }
    kill $mock; wait $mock 2>/dev/null || true; mock=""
}
stat() { curl -s "$url/_mock/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); work dir: $BASE_DIR; concurrency $CONC, poll ${POLL}s$([ "$TLS" = 1 ] && echo "; over https through nghttpx (seedbatch on HTTP/2, aiohttp on HTTP/1.1)")"
printf '%-11s %-8s %9s %9s %12s %13s %10s %10s %8s %8s  %s\n' runner jobs seconds jobs/s "cpu ms/job" "user/sys" "peak RSS" "calls/job" refused commits "cpu ms/job of each run"
for n in "${SIZES[@]}"; do
    d=$tmp/run$n; mkdir -p "$d"
    python3 - "$d/m.yaml" "$n" "$CONC" "$POLL" <<'PY'
import sys
path, n, conc, poll = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
with open(path, "w") as f:
    f.write("version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\n")
    f.write("output_dir: out\ndefaults: {max_images: 1, output_format: jpeg}\n")
    f.write(f"limits: {{concurrency: {conc}, requests_per_second: 0, poll_interval: {int(poll * 1000)}ms}}\njobs:\n")
    for i in range(n):
        f.write(f'  - {{id: j{i}, prompt: "bench {i}", images: ["http://127.0.0.1/in/{i}.jpg"]}}\n')
PY
    : > "$d/rows"
    REPEAT=${REPEAT_SET:-$([ "$n" -le 20000 ] && echo 9 || echo 5)}
    for rep in $(seq 1 "$REPEAT"); do
        rm -rf "$d/out"
        start_mock
        env "${ca_env[@]}" ATLASCLOUD_BASE_URL="$run_url/api/v1" ATLASCLOUD_API_KEY=test-key \
            /usr/bin/time -f '%e %U %S %M' -o "$d/time" build-bench/seedbatch run --progress never "$d/m.yaml" \
            >/dev/null 2>"$d/log" || { echo "seedbatch failed:"; grep -v 'curl ' "$d/log" | tail -5; exit 1; }
        read -r el user sys rss < "$d/time"
        api=$(stat '["api_requests"]'); refused=$(stat '["refused_rate"]')
        commits=$(grep -o '[0-9]* state commits' "$d/log" | grep -o '^[0-9]*' || echo "-1")
        stop_mock
        echo "seedbatch $n $el $user $sys $rss $api $refused $commits" >> "$d/rows"
        for peer in $PEERS; do
            rm -rf "$d/peer"
            jobs_arg="$d/m.yaml"; name=python
            [ "$peer" = code ] && { jobs_arg=$n; name=python-code; }
            start_mock
            env "${ca_env[@]}" /usr/bin/time -f '%e %U %S %M' -o "$d/ptime" \
                /usr/bin/python3 scripts/bench_peer.py "$run_url/api/v1" test-key "$jobs_arg" "$CONC" "$d/peer" "$POLL" >/dev/null
            read -r el user sys rss < "$d/ptime"
            api=$(stat '["api_requests"]'); refused=$(stat '["refused_rate"]')
            stop_mock
            echo "$name $n $el $user $sys $rss $api $refused -1" >> "$d/rows"
        done
    done
    # Each runner's median over the repetitions (they alternate, so both meet the same
    # machine); each run's CPU per job in the last column.
    python3 - "$d/rows" <<'PY'
import random, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
cpu, per_run = {}, {}
runners = list(dict.fromkeys(r[0] for r in rows))
for runner in runners:
    rs = [r for r in rows if r[0] == runner]
    n = int(rs[0][1])
    med = lambda i: statistics.median(float(r[i]) for r in rs)
    runs = [(float(r[3]) + float(r[4])) * 1000 / n for r in rs]
    cpu[runner] = statistics.median(runs)
    per_run[runner] = runs
    commits = med(8)
    user_sys = f"{med(3) * 1000 / n:.3f}/{med(4) * 1000 / n:.3f}"
    print(f"{runner:<11} {n:<8} {med(2):>9.2f} {n / med(2):>9.0f} {cpu[runner]:>12.3f} {user_sys:>13} {med(5) / 1024:>7.1f}MiB "
          f"{med(6) / n:>10.2f} {med(7):>8.0f} {('-' if commits < 0 else f'{commits:.0f}'):>8}  "
          + " ".join(f"{c:.3f}" for c in runs))
# How far the ratio of the medians moves with the runs drawn: each runner's runs resampled
# (with replacement, a fixed seed), the ratio's 5th and 95th percentiles over 2,000 draws.
for peer in runners[1:]:
    rnd = random.Random(1)
    draws = sorted(statistics.median(rnd.choices(per_run[peer], k=len(per_run[peer])))
                   / statistics.median(rnd.choices(per_run["seedbatch"], k=len(per_run["seedbatch"])))
                   for _ in range(2000))
    print(f"{'ratio':<11} {n:<8} {peer} / seedbatch CPU per job: {cpu[peer] / cpu['seedbatch']:.2f}"
          f" (resampled runs: 90% between {draws[100]:.2f} and {draws[1899]:.2f})")
PY
    rm -rf "$d"
done
