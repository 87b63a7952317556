#!/usr/bin/env bash
# The fault and bad-input checklist (../shared/RELIABILITY.md), each with an exact
# pass criterion: Retry-After, 503 storms, gateway errors, TLS, redirects, oversized bodies,
# symlinks in the output directory, fsync errors, and a full disk.
. "$(dirname "$0")/../lib.sh"

KEY="hard-$$"
export ATLASCLOUD_API_KEY="$KEY"
use_mock() { export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"; }
batch() { # batch DIR N [limits...]: N jobs with their own images
    local d=$1 n=$2 lim=${3:-"concurrency: 4, requests_per_second: 0, poll_interval: 100ms"}
    mkdir -p "$d/img"
    for i in $(seq 1 "$n"); do "$GEN_IMAGE" jpeg 64 80 "$d/img/p$i.jpg" "$i"; done
    printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\noutput_dir: out\nlimits: {%s}\njobs:\n  - foreach: "img/p*.jpg"\n    id: "job-{stem}"\n    prompt: "Edit {name}"\n    images: ["{path}"]\n' "$lim" > "$d/m.yaml"
}

# --- Retry-After: 5 is honoured: no call of any kind before 5 s have passed ---
D=$T/ra; batch "$D" 1
start_mock --key "$KEY" --fault submit:429ra:#1 --retry-after 5; use_mock
S=$(date +%s%N); run "$SEEDBATCH" run "$D/m.yaml"; E=$(( ($(date +%s%N) - S) / 1000000 ))
expect_rc 0 "run after a 429 with Retry-After: 5"
expect_eq "$(stat_of requests.submit)" 2 "one refused submit, one retry"
[ "$E" -ge 5000 ] && pass || fail "the retry came after ${E}ms, before Retry-After's 5 s"
stop_mock

# Retry-After as an HTTP-date 8 s ahead (its other form): no call before 7 s (the date
# has 1 s steps); a date is not taken as a fixed "a while" (that was 5 s)
D=$T/radate; batch "$D" 1
start_mock --key "$KEY" --fault submit:429ra:#1 --retry-after 8 --retry-after-date; use_mock
S=$(date +%s%N); run "$SEEDBATCH" run "$D/m.yaml"; E=$(( ($(date +%s%N) - S) / 1000000 ))
expect_rc 0 "run after a 429 with an HTTP-date Retry-After"
expect_eq "$(stat_of requests.submit)" 2 "one refused submit, one retry"
[ "$E" -ge 7000 ] && [ "$E" -lt 20000 ] && pass || fail "the retry came after ${E}ms: expected the date, 7 to 8 s ahead"
stop_mock

# --- a long 503 storm: bounded attempts, then failed with the server's answer ---
D=$T/storm; batch "$D" 3 "concurrency: 4, requests_per_second: 0, poll_interval: 100ms, max_attempts: 3"
start_mock --key "$KEY" --fault submit:503:1; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 1 "503 storm"
expect_eq "$(stat_of requests.submit)" 9 "exactly max_attempts (3) submits per job"
expect_eq "$(results_field "$D/out/results.jsonl" job-p1 error.kind)" server "kind server"
expect_eq "$(results_field "$D/out/results.jsonl" job-p1 error.http_status)" 503 "http_status 503"
expect_eq "$(results_field "$D/out/results.jsonl" job-p1 attempts)" 3 "attempts recorded"
expect_eq "$(grep -c '"possible_duplicate":true' "$D/out/results.jsonl")" 0 "a 503 answer is not a lost answer"
stop_mock

# --- a 500, or a gateway's 502 or 504, to a submit: retried and flagged (the API behind it
# may have taken it); a 503 is retried unflagged ---
D=$T/gateway; batch "$D" 4
start_mock --key "$KEY" --fault submit:502:#1 --fault submit:503:#1 --fault submit:504:#1 --fault submit:500:#1; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "submits answered 502, 503, 504 and 500 are retried"
expect_eq "$(stat_of requests.submit)" 8 "four refused submits, four retries"
R=$D/out/results.jsonl
# The four first submits go out together and each meets one of the faults (which job
# meets which is the order they reach the mock): the 500's, 502's and 504's jobs are flagged.
expect_eq "$(grep -c '"possible_duplicate":true' "$R")" 3 "three jobs flagged"
expect_eq "$(grep -c '"attempts":2' "$R")" 4 "every job submitted twice"
stop_mock

# --- proxies named in the environment are used (libcurl's variables), and their exceptions ---
DEAD=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
D=$T/proxy; batch "$D" 1 "concurrency: 1, requests_per_second: 0, poll_interval: 100ms, max_attempts: 1, unreachable_timeout: 2s"
start_mock --key "$KEY"; use_mock
run env http_proxy="http://127.0.0.1:$DEAD" "$SEEDBATCH" run "$D/m.yaml"
expect_rc 75 "a run through a proxy that is not there stops, its job kept"
expect_eq "$(stat_of api_requests)" 0 "nothing reached the API past the dead proxy"
expect_in "$T/err" "port $DEAD" "the error names the proxy's port"
expect_eq "$(results_field "$D/out/results.jsonl" job-p1 status)" pending "the job left pending"
D=$T/noproxy; batch "$D" 1
run env http_proxy="http://127.0.0.1:$DEAD" no_proxy=127.0.0.1 "$SEEDBATCH" run "$D/m.yaml"
expect_rc 0 "no_proxy exempts the API's host"
expect_eq "$(stat_of api_requests)" 3 "upload, submit and poll reached the API"
stop_mock
# A proxy that takes a user and password (the mock standing in front of itself): the run
# goes through it, and --debug shows neither the password nor its Basic form.
D=$T/proxyauth; batch "$D" 1
start_mock --key "$KEY"; use_mock
PROXY_PW="pw-$$-hunter2"
run env http_proxy="http://bob:$PROXY_PW@${MOCK_URL#http://}" "$SEEDBATCH" run --debug "$D/m.yaml"
expect_rc 0 "a run through a proxy with credentials"
expect_eq "$(stat_of absolute_form)" 4 "upload, submit, poll and download went through the proxy"
expect_in "$T/err" "Proxy-Authorization: [redacted]" "the proxy's credentials header is redacted"
expect_in "$T/err" "http://[redacted]@127.0.0.1" "the proxy URL libcurl notes is shown without its credentials"
expect_not_in "$T/err" "$PROXY_PW" "the proxy's password in no log line"
expect_not_in "$T/err" "$(printf 'bob:%s' "$PROXY_PW" | base64)" "nor its Basic form"
stop_mock

# --- TLS: a self-signed server is refused unless its CA is given; never unverified ---
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" -days 1 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1
D=$T/tls; batch "$D" 2
MOCK_CA="$T/cert.pem"
start_mock --key "$KEY" --tls-cert "$T/cert.pem" --tls-key "$T/key.pem"; use_mock
case "$MOCK_URL" in https://*) pass;; *) fail "mock is not serving https: $MOCK_URL";; esac
run env -u SSL_CERT_FILE -u CURL_CA_BUNDLE "$SEEDBATCH" run "$D/m.yaml"; expect_rc 1 "self-signed certificate refused"
expect_in "$T/err" "SSL" "the TLS failure is named"
expect_eq "$(stat_of api_requests)" 0 "nothing reached the server"
run env -u CURL_CA_BUNDLE SSL_CERT_FILE="$T/cert.pem" "$SEEDBATCH" run --retry-failed "$D/m.yaml"; expect_rc 0 "accepted with SSL_CERT_FILE"
rm -rf "$D/out"
run env -u SSL_CERT_FILE CURL_CA_BUNDLE="$T/cert.pem" "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "accepted with CURL_CA_BUNDLE"
expect_eq "$(grep -c '"status":"succeeded"' "$D/out/results.jsonl")" 2 "jobs done over https"
stop_mock

# --- downloads: http(s) only, also after redirects; redirect loops end ---
for mode in file gopher loop ok; do
    D=$T/redir-$mode; batch "$D" 1 "concurrency: 2, requests_per_second: 0, poll_interval: 100ms, max_attempts: 2"
    start_mock --key "$KEY" --output-redirect $mode; use_mock
    run "$SEEDBATCH" run "$D/m.yaml"
    if [ $mode = ok ]; then
        expect_rc 0 "redirect to the real output followed"
        expect_eq "$(ls "$D/out" | grep -c '^job-p1_1\.jpg$')" 1 "output written after a redirect"
    else
        expect_rc 1 "redirect to $mode refused"
        expect_eq "$(results_field "$D/out/results.jsonl" job-p1 status)" failed "$mode: job failed"
        expect_eq "$(ls "$D/out" | grep -c 'job-p1')" 0 "$mode: no file written"
    fi
    [ $mode = loop ] && { [ "$(stat_of redirects)" -le 12 ] && pass || fail "redirect loop followed $(stat_of redirects) times"; }
    stop_mock
done
expect_in "$T/redir-file/out/results.jsonl" 'Protocol \"file\" not supported' "file:// redirect refused by protocol"
expect_in "$T/redir-gopher/out/results.jsonl" 'Protocol \"gopher\" not supported' "gopher:// redirect refused by protocol"
expect_in "$T/redir-loop/out/results.jsonl" "Maximum (5) redirects followed" "redirect loop ends at 5"

# --- an endless chunked answer is capped in the write callback ---
D=$T/huge; batch "$D" 1
start_mock --key "$KEY" --fault poll:huge:#1; use_mock
run /usr/bin/time -f "%M" -o "$T/rss" "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "run after a 3 GB answer"
[ "$(cat "$T/rss")" -lt 102400 ] && pass || fail "peak RSS $(cat "$T/rss") KiB after a huge body"
expect_eq "$(stat_of requests.poll)" 2 "the capped poll was retried once"
stop_mock

# --- symlinks in the output directory never redirect writes ---
D=$T/sym; batch "$D" 1
mkdir -p "$D/out"; echo "precious" > "$T/target"
ln -s "$T/target" "$D/out/job-p1_1.jpg"
ln -s "$T/target" "$D/out/job-p1_1.part"
start_mock --key "$KEY"; use_mock
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "run with symlinks planted"
expect_eq "$(cat "$T/target")" precious "the symlink target is untouched"
[ -f "$D/out/job-p1_1.jpg" ] && [ ! -L "$D/out/job-p1_1.jpg" ] && pass || fail "the output replaced the symlink"
stop_mock

# --- fsync EIO: the job fails, no final file, nothing marked done, state intact ---
# fiu works by LD_PRELOAD, which crashes sanitizer runtimes: these cases run in the
# regular build (the same CI run runs both).
if [ "${SANITIZED:-0}" = 1 ]; then
    echo "fsync EIO cases: run in the regular build (fiu's LD_PRELOAD and ASan do not mix)"
else
    D=$T/eio; batch "$D" 2
    # A disk whose fsync fails from the start: the output directory's probe finds it, nothing is sent.
    start_mock --key "$KEY"; use_mock
    run fiu-run -x -c "enable name=posix/io/sync/fsync,failinfo=5" "$SEEDBATCH" run "$D/m.yaml"; expect_rc 2 "fsync EIO from the start"
    expect_in "$T/err" "output_dir $D/out cannot be written (Input/output error): nothing was sent" "EIO at the probe named"
    expect_eq "$(stat_of api_requests)" 0 "EIO at the probe: nothing sent"
    stop_mock
    # ... and one that fails once outputs arrive (enabled through fiu's control pipe after the probe).
    start_mock --key "$KEY" --latency 2500; use_mock
    fiu-run -x "$SEEDBATCH" run "$D/m.yaml" >"$T/out" 2>"$T/err" &
    P=$!
    sleep 1; fiu-ctrl -c "enable name=posix/io/sync/fsync,failinfo=5" "$P"
    wait "$P"; RC=$?
    expect_rc 1 "fsync EIO on outputs"
    expect_in "$T/err" "fsync of the output failed: Input/output error" "EIO named"
    expect_eq "$(ls "$D/out" | grep -c '^job-p.*\.jpg$')" 0 "no output under a final name"
    expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE state='succeeded'")" 0 "nothing marked done"
    expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "PRAGMA integrity_check")" ok "integrity"
    rm -rf "$D/out"
    run fiu-run -x -c "enable name=posix/io/sync/fdatasync,failinfo=5" "$SEEDBATCH" run "$D/m.yaml"; expect_rc 1 "fdatasync EIO on the state"
    expect_in "$T/err" "disk I/O error" "the state error is named"
    expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE state='succeeded'" 2>/dev/null || echo 0)" 0 "nothing marked done"
    stop_mock
fi

# --- fsync of the output directory: EINVAL (a filesystem that cannot sync a directory:
# VirtualBox shared folders, some FUSE and network ones) is said once and the jobs succeed;
# EIO fails them, named. strace injects the error into that directory's fsync alone.
# (LeakSanitizer cannot work under ptrace: off for these runs of the sanitizer build.) ---
D=$T/dirsync; batch "$D" 3
start_mock --key "$KEY"; use_mock
mkdir -p "$D/out"
ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" run strace -f -qq -o "$T/strace" -P "$D/out" -e trace=fsync \
    -e inject=fsync:error=EINVAL "$SEEDBATCH" run "$D/m.yaml"
expect_rc 0 "directory fsync not supported"
[ "$(grep -c 'EINVAL.*INJECTED' "$T/strace")" -ge 1 ] && pass || fail "no directory fsync was failed"
expect_eq "$(grep -c 'cannot fsync a directory (Invalid argument): outputs are renamed into place without that' "$T/err")" 1 "said once"
expect_eq "$(ls "$D/out" | grep -c '^job-p[0-9]_1\.jpg$')" 3 "3 outputs in place"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE state='succeeded'")" 3 "all succeeded"
rm -rf "$D/out"; mkdir -p "$D/out"
ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" run strace -f -qq -o "$T/strace" -P "$D/out" -e trace=fsync \
    -e inject=fsync:error=EIO "$SEEDBATCH" run "$D/m.yaml"
expect_rc 1 "directory fsync EIO"
expect_in "$T/err" "fsync of the output directory failed: Input/output error" "EIO named"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "SELECT count(*) FROM jobs WHERE state='succeeded'")" 0 "nothing marked done"
expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "PRAGMA integrity_check")" ok "integrity"
stop_mock

# --- a state on a filesystem without locks (flock fails ENOLCK: NFS without its lock
# daemon, some FUSE filesystems): refused with that reason, not taken for another run ---
D=$T/nolock; batch "$D" 2
start_mock --key "$KEY"; use_mock
ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" run strace -f -qq -o /dev/null -e trace=flock \
    -e inject=flock:error=ENOLCK "$SEEDBATCH" run "$D/m.yaml"
expect_rc 2 "flock ENOLCK"
expect_in "$T/err" "state.db.lock: No locks available; its filesystem may not support locks" "reason named"
expect_not_in "$T/err" "another seedbatch run" "not taken for another run"
expect_eq "$(stat_of api_requests)" 0 "nothing sent"
stop_mock

# --- open files: a concurrency the process's limit (ulimit -n) cannot hold runs fewer jobs
# at once, said once, instead of failing jobs on "Too many open files"; 14 outputs a job
# (14 .part files at once) are more than even that leaves room for: those wait their turn ---
D=$T/nofile; batch "$D" 40 "concurrency: 100, requests_per_second: 0, poll_interval: 100ms"
sed -i 's#^output_dir: out#output_dir: out\ndefaults: {max_images: 14}#' "$D/m.yaml"
start_mock --key "$KEY"; use_mock
run bash -c "ulimit -n 200 && exec '$SEEDBATCH' run '$D/m.yaml'"; expect_rc 0 "40 jobs of 14 outputs in 200 open files"
expect_in "$T/err" "a concurrency of 100 needs about 356 open files and this process may have 200 (ulimit -n): running at most 48 jobs at once" "the limit and the concurrency it allows, said"
expect_eq "$(ls "$D/out" | grep -c '^job-p[0-9]*_[0-9]*\.jpg$')" 560 "560 outputs written"
expect_eq "$(ls -a "$D/out" | grep -c '\.part$')" 0 "no .part left"
expect_eq "$(stat_of requests.download)" 560 "each output downloaded once"
expect_eq "$(stat_of submissions)" 40 "one submission a job"
stop_mock
# A soft limit under the hard one is raised to it: no warning, nothing failed.
D=$T/nofile2; batch "$D" 64 "concurrency: 64, requests_per_second: 0, poll_interval: 100ms"
start_mock --key "$KEY" --latency 300; use_mock
run bash -c "ulimit -S -n 40 && ulimit -H -n 4096 && exec '$SEEDBATCH' run --debug '$D/m.yaml'"; expect_rc 0 "64 jobs at once with a soft limit of 40 open files"
expect_in "$T/err" "open files: the limit raised from 40 to 4096" "the soft limit is raised to the hard one"
expect_not_in "$T/err" "ulimit -n" "then there is nothing to warn about"
expect_eq "$(grep -c '"status":"succeeded"' "$D/out/results.jsonl")" 64 "all 64 done"
expect_eq "$(stat_of requests.upload)" 64 "one upload a file: none failed for want of a socket"
expect_eq "$(stat_of requests.submit)" 64 "one submit a job"
stop_mock

# --- more manifests than the open-files limit can hold a state for (each needs about 8):
# refused before anything is opened or sent, with the figures, rather than failing midway ---
D=$T/manyman; mkdir -p "$D"; "$GEN_IMAGE" jpeg 64 64 "$D/a.jpg" 1
for i in $(seq 1 40); do
    printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\noutput_dir: out%d\njobs:\n  - {id: j, prompt: "p %d", images: [a.jpg]}\n' "$i" "$i" > "$D/m$i.yaml"
done
start_mock --key "$KEY"; use_mock
run bash -c "ulimit -n 200 && exec '$SEEDBATCH' run $D/m*.yaml"
expect_rc 2 "40 manifests in 200 open files"
expect_in "$T/err" "40 manifests need about 488 open files and this process may have 200 (ulimit -n): run them a few at a time" "the figures, said"
expect_eq "$(ls -d "$D"/out* 2>/dev/null | wc -l)" 0 "no state or output directory made"
expect_eq "$(stat_of api_requests)" 0 "nothing sent"
run bash -c "ulimit -n 200 && exec '$SEEDBATCH' run $D/m1.yaml $D/m2.yaml $D/m3.yaml"
expect_rc 0 "3 of them in the same limit"
stop_mock

# --- a full disk, on the outputs and on the state (small tmpfs mounts in a private namespace) ---
# Storage before money: no job fails for it; the run stops submitting at once and exits 75,
# naming the path and the space the unfinished jobs need; once there is room (the mount made
# larger), the next run downloads what was paid for and submits nothing twice.
full_disk() { # full_disk WHAT SIZE: WHAT is outputs or state
    local what=$1 size=$2 D=$T/full-$1
    batch "$D" 12
    sed -i 's#^output_dir: out#output_dir: '"$([ $what = outputs ] && echo small/out || echo out)"'\ndefaults: {max_images: 4}#' "$D/m.yaml"
    mkdir -p "$D/small"
    local state="$D/small/state.db"; [ $what = outputs ] && state="$D/state.db"
    start_mock --key "$KEY" --outputs 4; use_mock
    run unshare -m bash -c "mount -t tmpfs -o size=$size tmpfs '$D/small' && '$SEEDBATCH' run --state '$state' '$D/m.yaml';
        rc=\$?; mkdir -p '$D/copy'; cp -r '$D/small/.' '$D/copy/' 2>/dev/null; cp '$D/state.db' '$D/first.db' 2>/dev/null;
        mount -o remount,size=16m '$D/small' && '$SEEDBATCH' run --state '$state' '$D/m.yaml' > '$D/second.err' 2>&1;
        echo \$? > '$D/second.rc'; mkdir -p '$D/after'; cp -r '$D/small/.' '$D/after/' 2>/dev/null; exit \$rc"
    expect_rc 75 "full $what: stopped to be run again"
    if [ $what = outputs ]; then
        expect_in "$T/err" "$D/small/out: No space left on device: stopping" "full outputs: ENOSPC named with the path"
        expect_in "$T/err" "whose outputs need about" "full outputs: the space needed, said"
    else
        expect_in "$T/err" "$state: No space left on device: stopping" "full state: named with the path"
    fi
    local db="$D/first.db" out="$D/out"
    [ $what = state ] && db="$D/copy/state.db"
    [ $what = outputs ] && out="$D/copy/out"
    local ok; ok=$(sqlite3 "$db" "SELECT count(*) FROM jobs WHERE state='succeeded'" 2>/dev/null || echo 0)
    local files; files=$(ls "$out" 2>/dev/null | grep -c '^job-.*\.jpg$' || true)
    local bad; bad=$(python3 -c '
import glob, sys
print(sum(1 for f in glob.glob(sys.argv[1] + "/job-*.jpg")
          if not (lambda b: b[:2] == b"\xff\xd8" and b[-2:] == b"\xff\xd9")(open(f, "rb").read())))' "$out")
    expect_eq "$bad" 0 "full $what: every final file complete"
    [ "$files" -ge $((ok * 4)) ] && pass || fail "full $what: $ok jobs marked succeeded but only $files files"
    [ "$ok" -lt 12 ] && pass || fail "full $what: the disk never filled"
    expect_eq "$(sqlite3 "$db" "SELECT count(*) FROM jobs WHERE state='failed'" 2>&1)" 0 "full $what: no job failed for it"
    expect_eq "$(sqlite3 "$db" "PRAGMA integrity_check" 2>&1)" ok "full $what: state intact"
    # With room again, the same command finishes the batch without paying twice.
    expect_eq "$(cat "$D/second.rc")" 0 "full $what: the next run, with room, finishes"
    local db2="$D/state.db"; [ $what = state ] && db2="$D/after/state.db"
    expect_eq "$(sqlite3 "$db2" "SELECT count(*) FROM jobs WHERE state='succeeded'")" 12 "full $what: every job done"
    local dup; dup=$(sqlite3 "$db2" "SELECT count(*) FROM jobs WHERE possible_duplicate=1")
    expect_eq "$(stat_of predictions)" "$((12 + dup))" "full $what: nothing paid twice (but where flagged)"
    [ $what = outputs ] && expect_eq "$dup" 0 "full outputs: no submit in doubt"
    stop_mock
}
# No inode left for the outputs: creating a .part fails (ENOSPC) before any byte: the same.
no_inodes() {
    local D=$T/inodes
    batch "$D" 12
    sed -i 's#^output_dir: out#output_dir: small/out\ndefaults: {max_images: 4}#' "$D/m.yaml"
    mkdir -p "$D/small"
    start_mock --key "$KEY" --outputs 4; use_mock
    run unshare -m bash -c "mount -t tmpfs -o size=8m,nr_inodes=24 tmpfs '$D/small' && '$SEEDBATCH' run --state '$D/state.db' '$D/m.yaml';
        rc=\$?; mkdir -p '$D/copy'; cp -r '$D/small/.' '$D/copy/' 2>/dev/null;
        mount -o remount,nr_inodes=1000 '$D/small' && '$SEEDBATCH' run --state '$D/state.db' '$D/m.yaml' > '$D/second.err' 2>&1;
        echo \$? > '$D/second.rc'; exit \$rc"
    expect_rc 75 "no inodes for the outputs"
    expect_in "$T/err" "$D/small/out: No space left on device: stopping" "no inodes: ENOSPC named with the path"
    expect_eq "$(sqlite3 "$D/state.db" "SELECT count(*) FROM jobs WHERE state='failed'")" 0 "no inodes: no job failed for it"
    expect_eq "$(sqlite3 "$D/state.db" "PRAGMA integrity_check" 2>&1)" ok "no inodes: state intact"
    expect_eq "$(cat "$D/second.rc")" 0 "no inodes: the next run, with inodes, finishes"
    expect_eq "$(sqlite3 "$D/state.db" "SELECT count(*) FROM jobs WHERE state='succeeded'")" 12 "no inodes: every job done"
    expect_eq "$(stat_of predictions)" 12 "no inodes: each paid once"
    stop_mock
}
# A read-only output directory: refused before anything is sent (exit 2), naming it.
read_only() {
    local D=$T/readonly
    batch "$D" 3
    mkdir -p "$D/out"
    start_mock --key "$KEY"; use_mock
    run unshare -m bash -c "mount --bind '$D/out' '$D/out' && mount -o remount,bind,ro '$D/out' && '$SEEDBATCH' run --state '$D/state.db' '$D/m.yaml'"
    expect_rc 2 "read-only output_dir"
    expect_in "$T/err" "$D/m.yaml: output_dir $D/out cannot be written (Read-only file system): nothing was sent" "read-only: named"
    expect_eq "$(stat_of api_requests)" 0 "read-only: nothing sent, nothing paid"
    stop_mock
}
if unshare -m true 2>/dev/null; then
    full_disk outputs 96k
    full_disk state 128k
    no_inodes
    read_only
else
    fail "unshare -m is not permitted here: the full-disk tests could not run"
fi

# --- an output directory on a filesystem that folds case (FAT through FUSE, as a USB disk
# or an SMB share): jobs whose ids differ only in case would write the same files (one job
# failed after it was paid for, or one's outputs overwrote the other's), so they are refused
# before anything is sent; ids that differ otherwise run there; on a filesystem that tells
# case apart the first batch runs as it is ---
D=$T/fold; batch "$D" 2; mkdir -p "$D/fat" "$D/st"
cases() { # cases DIR ID...: a manifest with output_dir DIR/out, one job per id
    local dir=$1; shift
    printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\noutput_dir: %s/out\nlimits: {concurrency: 8, requests_per_second: 0, poll_interval: 100ms}\njobs:\n' "$dir"
    for id in "$@"; do printf '  - {id: %s, prompt: "edit %s", images: [img/p1.jpg]}\n' "$id" "$id"; done
}
truncate -s 16M "$D/fat.img" && mkfs.vfat "$D/fat.img" >/dev/null && fusefat -o rw+ "$D/fat.img" "$D/fat" >/dev/null 2>&1 && UNMOUNT=$D/fat
if [ -n "$UNMOUNT" ]; then
    start_mock --key "$KEY"; use_mock
    cases fat x sku-A sku-a SKU-b sku-B > "$D/m.yaml"
    # The state beside it: SQLite needs locks and shared memory, which this FUSE FAT lacks.
    run "$SEEDBATCH" run --state "$D/st/state.db" "$D/m.yaml"
    expect_rc 2 "ids that differ only in case on a case-folding output directory"
    expect_in "$T/err" "$D/m.yaml: jobs sku-A and sku-a would write the same output files (and 1 more such group): $D/fat/out is on a filesystem that does not tell upper from lower case in names" "the first pair, the number of others and the directory named"
    expect_eq "$(stat_of api_requests)" 0 "nothing sent"
    expect_eq "$(ls -A "$D/fat/out" | tr '\n' ' ')" "" "nothing left in the output directory (the probe file is removed)"
    cases fat x sku-A sku-a2 SKU-b sku-B2 > "$D/m.yaml"
    run "$SEEDBATCH" run --state "$D/st/state.db" "$D/m.yaml"
    expect_rc 0 "ids that differ in more than case, on the same directory"
    expect_eq "$(ls "$D/fat/out" | grep -c '_1\.jpg$')" 5 "5 jobs, an output each"
    expect_eq "$(stat_of submissions)" 5 "one submission a job"
    # output_name paths that differ only in case (a catalogue's categories) are refused the same way.
    cases fat/two p1 p2 > "$D/m2.yaml"
    sed -i 's|{id: p1, |{id: p1, output_name: "Shoes/x_{k}.{ext}", |; s|{id: p2, |{id: p2, output_name: "shoes/X_{k}.{ext}", |' "$D/m2.yaml"
    mkdir -p "$D/st2"
    run "$SEEDBATCH" run --state "$D/st2/state.db" "$D/m2.yaml"
    expect_rc 2 "output paths that differ only in case on a case-folding output directory"
    expect_in "$T/err" "$D/m2.yaml: jobs p1 and p2 would write the same output files: $D/fat/two/out is on a filesystem" "the pair named"
    expect_eq "$(stat_of submissions)" 5 "nothing more sent"
    stop_mock
    umount "$D/fat" && UNMOUNT=""
else
    fail "FAT through FUSE (fusefat, /dev/fuse) is not available here: the case-folding test could not run"
fi
start_mock --key "$KEY"; use_mock
cases cs x sku-A sku-a SKU-b sku-B > "$D/m.yaml"
run "$SEEDBATCH" run "$D/m.yaml"
expect_rc 0 "the same ids on a filesystem that tells case apart"
expect_eq "$(ls "$D/cs/out" | grep -c '_1\.jpg$')" 5 "each job its own output"
expect_eq "$(ls -A "$D/cs/out" | grep -c probe)" 0 "no probe file left"
stop_mock

# --- two manifests of one run reaching one output directory by different paths ("..", a
# symbolic link): refused as sharing a state (exit 2), not taken for another run holding
# its lock (exit 75, which cron would retry for ever) ---
D=$T/sharedir; mkdir -p "$D/a" "$D/b" "$D/real"; ln -s ../real "$D/b/link"
"$GEN_IMAGE" jpeg 64 64 "$D/a/x.jpg" 1; cp "$D/a/x.jpg" "$D/b/x.jpg"
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\noutput_dir: ../real\njobs:\n  - {id: a1, prompt: "a", images: [x.jpg]}\n' > "$D/a/m.yaml"
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\noutput_dir: link\njobs:\n  - {id: b1, prompt: "b", images: [x.jpg]}\n' > "$D/b/m.yaml"
start_mock --key "$KEY"; use_mock
run "$SEEDBATCH" run "$D/a/m.yaml" "$D/b/m.yaml"
expect_rc 2 "two manifests, one output directory"
expect_in "$T/err" "$D/a/m.yaml and $D/b/m.yaml would share the state $D/real/.seedbatch/state.db: give them different output_dir" "both manifests and the one state named"
expect_not_in "$T/err" "another seedbatch run" "not taken for another run"
expect_eq "$(stat_of api_requests)" 0 "nothing sent"
run "$SEEDBATCH" run "$D/a/m.yaml"; expect_rc 0 "each alone runs"
run "$SEEDBATCH" run "$D/b/m.yaml"; expect_rc 0 "... in turn"
expect_eq "$(stat_of submissions)" 2 "one submission each"
stop_mock

# --- a file size limit (ulimit -f) the state cannot grow past: the write fails, named,
# instead of SIGXFSZ killing the run; nothing was sent, and without the limit it all runs ---
D=$T/fsize; batch "$D" 3
start_mock --key "$KEY"; use_mock
run bash -c "ulimit -f 8 && exec '$SEEDBATCH' run '$D/m.yaml'"
expect_rc 1 "a state past the file size limit"
expect_in "$T/err" "$D/out/.seedbatch/state.db: disk I/O error" "the state file and the error named"
expect_eq "$(stat_of submissions)" 0 "nothing sent"
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "the same run without the limit"
expect_eq "$(stat_of submissions)" 3 "one submission a job"
stop_mock

# --- an address-space limit (ulimit -v, as some shared hosts and batch schedulers set):
# libuv's pool is sized to the run (one worker thread a manifest), so a run fits in 150 MB;
# libuv's default of four workers did not (each reserves an 8 MiB stack and, once it
# allocates, its own 32 MiB of the allocator's). Where the memory runs out, the run stops
# named with exit 1, never a crash (abort, 134), and the same command then resumes ---
if [ "${SANITIZED:-0}" = 1 ]; then
    echo "address-space limits: run in the regular build (ASan reserves terabytes of shadow memory)"
else
    D=$T/vmem; batch "$D" 6
    start_mock --key "$KEY"; use_mock
    run bash -c "ulimit -v 150000 && exec '$SEEDBATCH' run '$D/m.yaml'"
    expect_rc 0 "a run under ulimit -v 150000"
    expect_eq "$(ls "$D/out" | grep -c '^job-p.*\.jpg$')" 6 "every output written"
    expect_eq "$(stat_of submissions)" 6 "one submission a job"
    stop_mock
    # A UV_THREADPOOL_SIZE of the user's is kept: four workers under the same limit run
    # out, named; the state stays whole and a run without the limit finishes the batch.
    rm -rf "$D/out"
    start_mock --key "$KEY"; use_mock
    run bash -c "ulimit -v 150000 && UV_THREADPOOL_SIZE=4 exec '$SEEDBATCH' run '$D/m.yaml'"
    expect_rc 1 "four workers under ulimit -v 150000"
    expect_in "$T/err" "$D/out/.seedbatch/state.db: cannot commit: out of memory" "the state and the error named"
    expect_not_in "$T/err" "within a transaction" "the failed commit's transaction does not block the last one"
    expect_eq "$(grep -o 'API calls: [0-9]* submits' "$T/err" | grep -o '[0-9]*')" "$(stat_of requests.submit)" \
        "the summary counts the submits sent, not those the failure held back"
    expect_eq "$(sqlite3 "$D/out/.seedbatch/state.db" "PRAGMA integrity_check")" ok "integrity"
    run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 0 "the same run without the limit"
    expect_eq "$(ls "$D/out" | grep -c '^job-p.*\.jpg$')" 6 "every output written"
    expect_eq "$(unflagged_duplicates "$D/out/results.jsonl")" 0 "no job paid for twice unflagged"
    stop_mock
    # Too little to start: seedbatch's own allocation fails; told, exit 1, nothing sent.
    rm -rf "$D/out"
    start_mock --key "$KEY"; use_mock
    run bash -c "ulimit -v 40000 && exec '$SEEDBATCH' run '$D/m.yaml'"
    expect_rc 1 "a run under ulimit -v 40000"
    expect_in "$T/err" "seedbatch: out of memory (allocating" "out of memory named"
    expect_in "$T/err" "run the same command again to resume" "what to do next"
    expect_eq "$(stat_of api_requests) $(stat_of requests.upload)" "0 0" "nothing sent"
    stop_mock
fi

finish
