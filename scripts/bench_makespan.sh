#!/usr/bin/env bash
# The makespan set of scripts/bench.sh: how long a batch takes under the provider's
# request-rate limit, against the bound (the API calls it needs divided by the rate:
# one upload per distinct file, one submit and one poll per job), side by side with a
# Python asyncio + aiohttp runner (scripts/bench_peer.py) polling every second at the
# same limit. The bundled mock processes each prediction in LATENCY seconds and refuses
# (429) calls past RATE in any second.
#   scripts/bench_makespan.sh                      the sets below, REPEAT runs each
#   LATENCY=2.5 RATE=60 JOBS=400 FILES=20 CONC=128 scripts/bench_makespan.sh one
# Prints per run: wall seconds, the bound, efficiency (bound / wall), API calls per job
# besides uploads, uploads, refusals; then medians. "next run" is the same batch edited
# (every prompt changed) and run again on the same state: it starts from what the first
# run learned of the processing time.
set -euo pipefail
cd "$(dirname "$0")/.."
# Measured as users build it (RelWithDebInfo), rebuilt from the sources as they are.
BUILD_DIR=build-bench BUILD_TYPE=RelWithDebInfo bash scripts/setup.sh >/dev/null
bash scripts/apt-install.sh python3 python3-aiohttp python3-yaml sqlite3 curl >/dev/null
REPEAT=${REPEAT:-3}
BASE_DIR=${BENCH_DIR:-/dev/shm}
[ -d "$BASE_DIR" ] && [ -w "$BASE_DIR" ] || BASE_DIR=/tmp
tmp=$(mktemp -d "$BASE_DIR/sbmake.XXXXXX")
mock=""
trap '[ -n "$mock" ] && kill $mock 2>/dev/null; rm -rf "$tmp"' EXIT

start_mock() { # start_mock LATENCY_S RATE
    rm -f "$tmp/port"
    build-bench/mockapi --port-file "$tmp/port" --latency "$(python3 -c "print(int($1 * 1000))")" \
        --rate-limit "$2" --no-variants >"$tmp/mock.log" 2>&1 &
    mock=$!
    for _ in $(seq 1 200); do [ -s "$tmp/port" ] && break; sleep 0.02; done
    url="http://127.0.0.1:$(cat "$tmp/port")"
}
stop_mock() { kill $mock; wait $mock 2>/dev/null || true; mock=""; }
stat() { curl -s "$url/_mock/stats" | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# manifest DIR PROVIDER JOBS FILES CONC RATE TAG: JOBS jobs over FILES distinct local files
# (Atlas, uploaded) or remote URLs (RunComfy, which has no upload call).
manifest() {
    local d=$1 provider=$2 n=$3 files=$4 conc=$5 rate=$6 tag=$7
    mkdir -p "$d/img"
    if [ "$provider" = atlascloud ]; then
        for i in $(seq 1 "$files"); do
            [ -f "$d/img/f$i.jpg" ] || build-bench/tests/gen_image jpeg 96 96 "$d/img/f$i.jpg" "$i"
        done
        model=bytedance/seedream-v5.0-lite/edit-sequential
    else
        model=bytedance/seedream-5/lite/edit
    fi
    {
        printf 'version: 1\nprovider: %s\nmodel: %s\noutput_dir: out\n' "$provider" "$model"
        [ "$provider" = atlascloud ] && printf 'defaults: {max_images: 1}\n'
        printf 'limits: {concurrency: %d, requests_per_second: %s}\njobs:\n' "$conc" "$rate"
        for i in $(seq 1 "$n"); do
            k=$(( (i - 1) % files + 1 ))
            if [ "$provider" = atlascloud ]; then img="img/f$k.jpg"; else img="https://cdn.example.com/f$k.jpg"; fi
            printf '  - {id: j%d, prompt: "%s %d", images: [%s]}\n' "$i" "$tag" "$i" "$img"
        done
    } > "$d/m.yaml"
}

# measure NAME PROVIDER LATENCY RATE JOBS FILES CONC: one row per runner and run.
measure() {
    local name=$1 provider=$2 lat=$3 rate=$4 n=$5 files=$6 conc=$7
    local uploads_needed=0
    [ "$provider" = atlascloud ] && uploads_needed=$files
    local bound
    bound=$(python3 -c "print(($uploads_needed + 2 * $n) / $rate)")
    for rep in $(seq 1 "$REPEAT"); do
        d=$tmp/$name.$rep; rm -rf "$d"
        manifest "$d" "$provider" "$n" "$files" "$conc" "$rate" first
        for run in first next; do
            [ "$run" = next ] && sed -i 's/"first /"next /' "$d/m.yaml"
            start_mock "$lat" "$rate"
            local env_base="ATLASCLOUD_BASE_URL=$url/api/v1"
            [ "$provider" = runcomfy ] && env_base="RUNCOMFY_BASE_URL=$url"
            s=$(date +%s.%N)
            env "$env_base" ATLASCLOUD_API_KEY=test-key RUNCOMFY_API_TOKEN=test-key \
                build-bench/seedbatch run --progress never "$d/m.yaml" >/dev/null 2>"$d/log" \
                || { echo "seedbatch failed:"; tail -5 "$d/log"; exit 1; }
            e=$(date +%s.%N)
            api=$(stat 'd["api_requests"]'); up=$(stat 'd["requests"]["upload"]'); refused=$(stat 'd["refused_rate"]')
            stop_mock
            # The next run finds its files uploaded (the state keeps the URLs): its bound has no uploads.
            local b=$bound
            [ "$run" = next ] && b=$(python3 -c "print((2 * $n) / $rate)")
            echo "$name seedbatch-$run $e $s $b $api $up $refused $n" >> "$tmp/rows"
        done
        if [ "$provider" = atlascloud ]; then
            rm -rf "$d/peer"
            start_mock "$lat" "$rate"
            s=$(date +%s.%N)
            /usr/bin/python3 scripts/bench_peer.py "$url/api/v1" test-key "$d/m.yaml" "$conc" "$d/peer" 1 "$rate" >/dev/null
            e=$(date +%s.%N)
            api=$(stat 'd["api_requests"]'); up=$(stat 'd["requests"]["upload"]'); refused=$(stat 'd["refused_rate"]')
            stop_mock
            echo "$name python $e $s $bound $api $up $refused $n" >> "$tmp/rows"
        fi
    done
}

: > "$tmp/rows"
echo "machine: $(nproc) cores, $(uname -r); mock: each prediction takes LATENCY s, calls past RATE in a second refused (429)"
if [ "${1:-}" = one ]; then
    measure custom atlascloud "${LATENCY:-2.5}" "${RATE:-60}" "${JOBS:-400}" "${FILES:-20}" "${CONC:-128}"
else
    measure "400x2.5s@60" atlascloud 2.5 60 400 20 128
    measure "20x2s@60" atlascloud 2 60 20 20 16
    measure "rc20x2s@60" runcomfy 2 60 20 20 16
    measure "rc400x2.5s@60" runcomfy 2.5 60 400 20 128
fi
python3 - "$tmp/rows" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"{'set':<15} {'runner':<16} {'wall s':>7} {'bound s':>8} {'efficiency':>10} {'calls/job':>10} {'uploads':>8} {'refused':>8}  runs (wall s)")
keys = list(dict.fromkeys((r[0], r[1]) for r in rows))
for k in keys:
    rs = [r for r in rows if (r[0], r[1]) == k]
    walls = [float(r[2]) - float(r[3]) for r in rs]
    w = statistics.median(walls)
    b = float(rs[0][4])
    n = int(rs[0][8])
    calls = statistics.median((int(r[5]) - int(r[6])) / n for r in rs)
    print(f"{k[0]:<15} {k[1]:<16} {w:>7.2f} {b:>8.2f} {b / w:>10.2f} {calls:>10.2f} "
          f"{statistics.median(int(r[6]) for r in rs):>8.0f} {statistics.median(int(r[7]) for r in rs):>8.0f}  "
          + " ".join(f"{x:.2f}" for x in walls))
sets = dict.fromkeys(r[0] for r in rows)
for s in sets:
    sb = [float(r[2]) - float(r[3]) for r in rows if r[0] == s and r[1] == "seedbatch-first"]
    py = [float(r[2]) - float(r[3]) for r in rows if r[0] == s and r[1] == "python"]
    if sb and py:
        print(f"{s}: python / seedbatch wall time {statistics.median(py) / statistics.median(sb):.2f}")
PY
