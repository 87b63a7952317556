#!/usr/bin/env bash
# The report set of scripts/bench.sh: what the review page costs. A batch of JOBS jobs
# (two outputs each, 1024x1024 JPEG, references from 20 local files) is run against the
# bundled mock; then seedbatch writes report.html from the state (the time `seedbatch
# report` takes), and headless Chromium opens it from the disk, REPEAT times: first
# contentful paint, DOMContentLoaded and the load event (performance timing read by a
# copy of the page with a script appended), and the page's size.
#   JOBS=1000 REPEAT=5 scripts/bench_report.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=build-bench BUILD_TYPE=RelWithDebInfo bash scripts/setup.sh >/dev/null
bash scripts/apt-install.sh chromium python3 curl >/dev/null
JOBS=${JOBS:-1000}
REPEAT=${REPEAT:-5}
BASE_DIR=${BENCH_DIR:-/dev/shm}
[ -d "$BASE_DIR" ] && [ -w "$BASE_DIR" ] || BASE_DIR=/tmp
tmp=$(mktemp -d "$BASE_DIR/sbreport.XXXXXX")
mock=""
trap '[ -n "$mock" ] && kill $mock 2>/dev/null; rm -rf "$tmp"' EXIT
build-bench/mockapi --port-file "$tmp/port" --latency 0 --outputs 2 --no-variants >"$tmp/mock.log" 2>&1 &
mock=$!
for _ in $(seq 1 200); do [ -s "$tmp/port" ] && break; sleep 0.02; done
url="http://127.0.0.1:$(cat "$tmp/port")"
mkdir -p "$tmp/img"
for i in $(seq 1 20); do build-bench/tests/gen_image jpeg 1024 1024 "$tmp/img/f$i.jpg" "$i"; done
{
    printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\n'
    printf 'output_dir: out\n'
    printf 'defaults: {max_images: 2}\nlimits: {concurrency: 256, requests_per_second: 0, poll_interval: 100ms}\njobs:\n'
    for i in $(seq 1 "$JOBS"); do
        printf '  - {id: j%d, prompt: "Product %d on white marble, soft daylight; keep the label legible.", images: [img/f%d.jpg]}\n' \
            "$i" "$i" $(( (i - 1) % 20 + 1 ))
    done
} > "$tmp/m.yaml"
ATLASCLOUD_BASE_URL="$url/api/v1" ATLASCLOUD_API_KEY=test-key build-bench/seedbatch run --progress never "$tmp/m.yaml" \
    2>"$tmp/run.log" || { tail -3 "$tmp/run.log"; exit 1; }
kill $mock; wait $mock 2>/dev/null || true; mock=""
echo "machine: $(nproc) cores, $(uname -r); $JOBS jobs, $(find "$tmp/out" -name '*.jpg' | wc -l) outputs; $(chromium --version 2>/dev/null)"
for rep in $(seq 1 "$REPEAT"); do
    s=$(date +%s.%N)
    build-bench/seedbatch report "$tmp/m.yaml" >/dev/null
    e=$(date +%s.%N)
    echo "write $(python3 -c "print(round($e - $s, 3))")" >> "$tmp/rows"
done
size=$(stat -c %s "$tmp/out/report.html")
sed '/<\/body>/i <script>window.addEventListener("load",function(){setTimeout(function(){var n=performance.getEntriesByType("navigation")[0],p=performance.getEntriesByName("first-contentful-paint")[0];document.body.setAttribute("data-t",[p?p.startTime:-1,n.domContentLoadedEventEnd,n.loadEventEnd].join(" "))},300)})</script>' \
    "$tmp/out/report.html" > "$tmp/out/timed.html"
for rep in $(seq 1 "$REPEAT"); do
    chromium --headless --no-sandbox --disable-gpu --window-size=1280,900 --virtual-time-budget=2000 \
        --dump-dom "file://$tmp/out/timed.html" \
        2>/dev/null | grep -o 'data-t="[^"]*"' | tr -d '"' | sed 's/data-t=/paint /' >> "$tmp/rows"
done
python3 - "$tmp/rows" "$size" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
w = [float(r[1]) for r in rows if r[0] == "write"]
p = [[float(x) for x in r[1:]] for r in rows if r[0] == "paint"]
print(f"report.html: {int(sys.argv[2]) / 1024:.0f} KiB; seedbatch report: median {statistics.median(w):.3f} s "
      f"(runs {' '.join(f'{x:.3f}' for x in w)})")
if p:
    for i, name in enumerate(["first contentful paint", "DOMContentLoaded", "load event"]):
        v = [r[i] for r in p if r[i] >= 0]  # a run may end before the paint is recorded
        if v:
            print(f"Chromium {name}: median {statistics.median(v):.0f} ms (runs {' '.join(f'{x:.0f}' for x in v)}"
                  f"{'' if len(v) == len(p) else f'; not recorded in {len(p) - len(v)} of {len(p)}'})")
PY
