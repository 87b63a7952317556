#!/usr/bin/env bash
# HTTP/2 over TLS, as libcurl speaks to an https API that offers it: nghttpx (a
# TLS-terminating HTTP/2 proxy, Debian's nghttp2-proxy) in front of the mock, with a
# certificate made here. Many transfers share one connection (multiplexing); the
# proxy's GOAWAY after a number of streams, its 502 for a submit the API took but
# did not answer, a kill -9 mid-run and the proxy's own death with submits in flight
# lose and duplicate nothing unflagged.
. "$(dirname "$0")/../lib.sh"

command -v nghttpx >/dev/null || { fail "nghttpx is not installed (scripts/setup.sh installs nghttp2-proxy)"; finish; exit 1; }
KEY="h2-$$"
export ATLASCLOUD_API_KEY="$KEY" RUNCOMFY_API_TOKEN="$KEY"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" -days 1 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1
# seedbatch and check_outputs' curl both take the CA from here.
export CURL_CA_BUNDLE="$T/cert.pem"

NX_PID=""
stop_proxy() { [ -n "$NX_PID" ] && kill "$NX_PID" 2>/dev/null && wait "$NX_PID" 2>/dev/null; NX_PID=""; }
trap 'stop_proxy; cleanup' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# start_h2 ARGS...: the mock behind nghttpx; PROXY_URL is what seedbatch talks to, and
# the mock names the proxy in every URL it hands out (outputs, uploads, RunComfy's).
start_h2() {
    for _ in 1 2 3; do
        PX=$(free_port)
        start_mock --public-origin "https://127.0.0.1:$PX" "$@"
        : > "$T/access.log"
        if start_proxy; then
            PROXY_URL="https://127.0.0.1:$PX"
            export ATLASCLOUD_BASE_URL="$PROXY_URL/api/v1" RUNCOMFY_BASE_URL="$PROXY_URL"
            : > "$T/access.log"
            return 0
        fi
        stop_proxy; stop_mock
    done
    fail "nghttpx did not start"; sed 's/^/  | /' "$T/nx.err" >&2; finish; exit 1
}
# start_proxy: nghttpx on $PX in front of the running mock; fails if it does not answer.
start_proxy() {
    nghttpx --conf=/dev/null --frontend="127.0.0.1,$PX" --backend="127.0.0.1,${MOCK_URL##*:}" \
        --workers=1 --no-ocsp --errorlog-file="$T/nx.err" --accesslog-file="$T/access.log" \
        --accesslog-format='$alpn $remote_port $method $path $status' ${NX_ARGS:-} \
        "$T/key.pem" "$T/cert.pem" 2>>"$T/nx.err" &
    NX_PID=$!
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "https://127.0.0.1:$PX/_mock/stats" && return 0
        sleep 0.05
    done
    return 1
}
stop_h2() { stop_proxy; stop_mock; }
# From the proxy's access log: requests, those not on HTTP/2, connections, and the most
# requests one connection carried.
log_lines() { grep -vc '_mock/stats' "$T/access.log"; }
not_h2() { grep -v '_mock/stats' "$T/access.log" | awk '$1 != "h2"' | wc -l; }
connections() { grep -v '_mock/stats' "$T/access.log" | awk '{print $2}' | sort -u | wc -l; }
busiest() { grep -v '_mock/stats' "$T/access.log" | awk '{print $2}' | sort | uniq -c | sort -rn | awk 'NR == 1 {print $1}'; }
atlas_batch() { # atlas_batch DIR N [limits]: N jobs over 4 local images, two outputs each
    local d=$1 n=$2 lim=${3:-"concurrency: 64, requests_per_second: 0, poll_interval: 100ms"}
    mkdir -p "$d/img"
    for i in 1 2 3 4; do "$GEN_IMAGE" jpeg 64 80 "$d/img/p$i.jpg" "$i"; done
    {
        printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\n'
        printf 'output_dir: out\ndefaults: {max_images: 2, output_format: jpeg}\nlimits: {%s}\njobs:\n' "$lim"
        for i in $(seq 1 "$n"); do
            printf '  - {id: j%d, prompt: "h2 edit %d", images: [img/p%d.jpg]}\n' "$i" "$i" $(( (i - 1) % 4 + 1 ))
        done
    } > "$d/m.yaml"
}

# --- 1. a batch over HTTP/2: uploads, submits, polls and downloads multiplexed ---
D=$T/a; N=120; atlas_batch "$D" $N
start_h2 --key "$KEY" --latency 200
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "a batch over HTTP/2"
R=$D/out/results.jsonl
expect_eq "$(grep -c '"status":"succeeded"' "$R")" $N "every job succeeded"
expect_eq "$(ls "$D/out" | grep -c '^j[0-9]*_[12]\.jpg$')" $((N * 2)) "every output written"
expect_eq "$(stat_of requests.upload)" 4 "each local file uploaded once (multipart over HTTP/2)"
expect_eq "$(stat_of requests.submit)" $N "one submit per job"
expect_eq "$(stat_of requests.download)" $((N * 2)) "one download per output"
calls=$(( $(stat_of api_requests) + $(stat_of requests.download) ))
expect_eq "$(log_lines)" "$calls" "every request went through the proxy"
expect_eq "$(not_h2)" 0 "every request was HTTP/2"
# 64 predictions in work and their downloads would spread over 64 connections or more
# on HTTP/1.1. Here most requests share one; libcurl opens a few others, for the uploads
# that start together before the first connection is up and for a request that finds
# it holding the proxy's 100 streams.
c=$(connections); most=$(busiest)
[ $((most * 4)) -ge $((calls * 3)) ] && pass ||
    fail "transfers multiplexed: $c connections for $calls requests, at most $most on one"
expect_eq "$(grep -c '"possible_duplicate":true' "$R")" 0 "nothing flagged"
expect_eq "$(stat_of duplicate_submissions)" 0 "nothing submitted twice"
check_outputs "$R" "$D/out"
case "$(results_field "$R" j7 output_urls)" in '["https://127.0.0.1:'*) pass;; *) fail "outputs fetched through the proxy: $(results_field "$R" j7 output_urls)";; esac
stop_h2

# --- 2. GOAWAY every 25 streams (a server ending its connections): nothing lost or doubled ---
D=$T/goaway; N=150; atlas_batch "$D" $N
NX_ARGS="--frontend-max-requests=25" start_h2 --key "$KEY" --latency 100
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "a batch through GOAWAYs"
R=$D/out/results.jsonl
expect_eq "$(grep -c '"status":"succeeded"' "$R")" $N "every job succeeded"
expect_eq "$(ls "$D/out" | grep -c '^j[0-9]*_[12]\.jpg$')" $((N * 2)) "every output written"
expect_eq "$(stat_of distinct_submissions)" $N "each job submitted"
expect_eq "$(unflagged_duplicates "$R")" 0 "duplicates only where flagged"
# nghttpx's GOAWAY is graceful (every stream already opened is served): nothing is
# sent twice, so nothing is flagged.
expect_eq "$(grep -c '"possible_duplicate":true' "$R")" 0 "nothing flagged"
# About 600 requests at 25 streams a connection (a hint to nghttpx: the streams a client
# opened before the GOAWAY still go through, up to 100 at once).
c=$(connections); most=$(busiest)
[ "$c" -ge 8 ] && [ "$most" -le 150 ] && pass ||
    fail "the proxy ended its connections: $c for $(log_lines) requests, up to $most on one"
expect_eq "$(not_h2)" 0 "every request was HTTP/2"
stop_h2

# --- 3. the API takes a submit and drops its connection: the proxy answers 502 ---
D=$T/lost; N=40; atlas_batch "$D" $N "concurrency: 8, requests_per_second: 0, poll_interval: 100ms"
start_h2 --key "$KEY" --latency 100 --fault submit:lost:#3 --fault poll:drop:0.1 --seed 4
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "a batch through the proxy's 502s"
R=$D/out/results.jsonl
expect_eq "$(grep -c '"status":"succeeded"' "$R")" $N "every job succeeded"
expect_eq "$(grep -c ' POST /api/v1/model/generateImage 502$' "$T/access.log")" 3 "the proxy answered 502 to the three lost submits"
expect_eq "$(stat_of duplicate_submissions)" 3 "the three were created twice"
expect_eq "$(unflagged_duplicates "$R")" 0 "and are flagged possible_duplicate"
expect_eq "$(grep -c '"possible_duplicate":true' "$R")" 3 "exactly those three"
[ "$(grep -c ' GET /api/v1/model/prediction/.* 502$' "$T/access.log")" -ge 1 ] && pass || fail "polls answered 502 were retried"
stop_h2

# --- 4. RunComfy: its status and result URLs name the proxy, and are followed over HTTP/2 ---
D=$T/rc; mkdir -p "$D"
{
    printf 'version: 1\nprovider: runcomfy\nmodel: bytedance/seedream-5/lite/edit\noutput_dir: out\n'
    printf 'defaults: {sequential_image_generation: auto, max_images: 2, output_format: png, resolution: 2K}\n'
    printf 'limits: {concurrency: 16, requests_per_second: 0, poll_interval: 100ms}\njobs:\n'
    for i in $(seq 1 30); do printf '  - {id: r%d, prompt: "rc edit %d", images: ["https://cdn.example.com/%d.jpg"]}\n' "$i" "$i" "$i"; done
} > "$D/m.yaml"
start_h2 --key "$KEY" --latency 200
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "RunComfy over HTTP/2"
R=$D/out/results.jsonl
expect_eq "$(grep -c '"status":"succeeded"' "$R")" 30 "every RunComfy job succeeded"
expect_eq "$(ls "$D/out" | grep -c '^r[0-9]*_[12]\.png$')" 60 "every output written"
expect_eq "$(stat_of requests.rc_submit)" 30 "one submit per job"
[ "$(grep -c ' GET /v1/requests/.*/result 200$' "$T/access.log")" -ge 30 ] && pass || fail "results read through the proxy"
expect_eq "$(not_h2)" 0 "every request was HTTP/2"
stop_h2

# --- 5. kill -9 mid-run over HTTP/2, then resume ---
D=$T/kill; N=200; atlas_batch "$D" $N "concurrency: 32, requests_per_second: 0, poll_interval: 150ms"
start_h2 --key "$KEY" --latency 600
kills=0
for round in 1 2 3 4; do
    "$SEEDBATCH" run --quiet "$D/m.yaml" >/dev/null 2>"$T/kill.$round" & pid=$!
    sleep "0.$(( RANDOM % 5 + 3 ))"
    if kill -9 $pid 2>/dev/null; then kills=$((kills + 1)); fi
    wait $pid 2>/dev/null
done
[ "$kills" -ge 3 ] && pass || fail "only $kills of 4 runs were killed mid-way"
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "the run finishes after $kills kills"
R=$D/out/results.jsonl
expect_eq "$(grep -c '"status":"succeeded"' "$R")" $N "every job succeeded"
expect_eq "$(ls "$D/out" | grep -c '^j[0-9]*_[12]\.jpg$')" $((N * 2)) "every output written"
expect_eq "$(ls -a "$D/out" | grep -c '\.part$')" 0 "no .part file left"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "PRAGMA integrity_check")" ok "integrity_check"
expect_eq "$(stat_of distinct_submissions)" $N "each job submitted"
expect_eq "$(unflagged_duplicates "$R")" 0 "duplicates only where flagged"
expect_eq "$(not_h2)" 0 "every request was HTTP/2"
stop_h2

# --- 6. the proxy dies while submits wait at the API: their answers are lost ---
D=$T/proxykill; N=20; atlas_batch "$D" $N "concurrency: 8, requests_per_second: 0, poll_interval: 100ms"
start_h2 --key "$KEY" --latency 100 --fault submit:slow:#8 --slow-ms 4000
"$SEEDBATCH" run --progress never "$D/m.yaml" >"$T/pk.out" 2>"$T/pk.err" & pid=$!
# The first eight submits wait 4 s at the mock (room for a loaded machine); the proxy is killed while they wait.
for _ in $(seq 1 200); do [ "$(stat_of requests.submit)" -ge 8 ] && break; sleep 0.05; done
kill -9 "$NX_PID"; wait "$NX_PID" 2>/dev/null; NX_PID=""
sleep 0.5
start_proxy || fail "nghttpx did not start again"
wait $pid; RC=$?; expect_rc 0 "the run outlives its proxy"
R=$D/out/results.jsonl
expect_eq "$(grep -c '"status":"succeeded"' "$R")" $N "every job succeeded"
expect_eq "$(stat_of distinct_submissions)" $N "each job submitted"
expect_eq "$(grep -c '"possible_duplicate":true' "$R")" 8 "the eight cut off are flagged possible_duplicate"
expect_eq "$(unflagged_duplicates "$R")" 0 "duplicates only where flagged"
stop_h2

# The key went to the proxy in Authorization only, and never into a file here.
expect_eq "$(grep -rl -- "$KEY" "$T" --exclude=m.yaml 2>/dev/null | wc -l)" 0 "the key is in no file"
finish
