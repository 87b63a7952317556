# Shared helpers for the shell tests: assertions, a temporary directory, and
# starting/stopping the mock API server. Each test script sources this file.
set -u
PASSES=0
FAILS=0
T=$(mktemp -d /tmp/sbcli.XXXXXX)
MOCK_PID=""
UNMOUNT=""   # a mount point under $T a test made, unmounted on the way out
cleanup() {
    [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null && wait "$MOCK_PID" 2>/dev/null
    [ -n "$UNMOUNT" ] && umount "$UNMOUNT" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

pass() { PASSES=$((PASSES + 1)); }
fail() { FAILS=$((FAILS + 1)); echo "FAIL: $*" >&2; }

# run CMD...: runs a command, keeping its exit code in RC and its output in $T/out, $T/err.
run() { "$@" >"$T/out" 2>"$T/err"; RC=$?; }

expect_rc() { # expect_rc WANT WHAT
    if [ "$RC" -eq "$1" ]; then pass; else fail "$2: exit $RC, expected $1"; sed 's/^/  | /' "$T/err" >&2; fi
}
expect_in() { # expect_in FILE TEXT WHAT
    if grep -qF -- "$2" "$1"; then pass; else fail "$3: '$2' not in $(basename "$1")"; sed 's/^/  | /' "$1" >&2; fi
}
expect_not_in() {
    if grep -qF -- "$2" "$1"; then fail "$3: '$2' found in $(basename "$1")"; else pass; fi
}
expect_eq() { # expect_eq GOT WANT WHAT
    if [ "$1" = "$2" ]; then pass; else fail "$3: got '$1', expected '$2'"; fi
}

# start_mock ARGS...: starts mockapi on a free loopback port; sets MOCK_URL.
start_mock() {
    rm -f "$T/port"
    "$MOCKAPI" --port-file "$T/port" "$@" >"$T/mock.log" 2>&1 &
    MOCK_PID=$!
    for _ in $(seq 1 200); do [ -s "$T/port" ] && break; sleep 0.02; done
    # The mock announces its URL: https when it was given a certificate.
    for _ in $(seq 1 100); do grep -q "listening on" "$T/mock.log" && break; sleep 0.02; done
    MOCK_URL=$(grep -o 'https\?://127.0.0.1:[0-9]*' "$T/mock.log" | head -1)
    MOCK_CURL=(); case "$MOCK_URL" in https://*) MOCK_CURL=(--cacert "$MOCK_CA");; esac
}
stop_mock() {
    [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null && wait "$MOCK_PID" 2>/dev/null
    MOCK_PID=""
}
# stat_of NAME: one number from the mock's /_mock/stats (dotted path, e.g. requests.submit).
stat_of() {
    curl -s "${MOCK_CURL[@]}" "$MOCK_URL/_mock/stats" | python3 -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[k]
print(v)' "$1"
}
json_get() { # json_get FILE PATH: a value from a JSON file, dotted path, list indexes as numbers
    python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    if not k: continue
    v = v[int(k)] if isinstance(v, list) else (v.get(k) if isinstance(v, dict) else None)
print("null" if v is None else (json.dumps(v) if isinstance(v, (dict, list)) else v))' "$1" "$2"
}

finish() {
    echo "$(basename "$0"): $PASSES passed, $FAILS failed"
    [ "$FAILS" -eq 0 ]
}
# unflagged_duplicates RESULTS: how many duplicate submissions the mock saw for
# jobs that results.jsonl does not flag possible_duplicate (should be 0).
unflagged_duplicates() {
    curl -s "$MOCK_URL/_mock/stats" > "$T/stats.json"
    python3 - "$1" "$T/stats.json" <<'PY'
import json, sys
flagged = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    flagged[r["prompt"]] = flagged.get(r["prompt"], False) or r["possible_duplicate"]
stats = json.load(open(sys.argv[2]))
print(sum(1 for p in stats["duplicate_prompts"] if not flagged.get(p, False)))
PY
}

# results_field FILE ID FIELD: one field (dotted path) of one job in results.jsonl.
results_field() {
    python3 -c '
import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    if d["id"] == sys.argv[2]:
        v = d
        for k in sys.argv[3].split("."):
            v = v[k] if v is not None else None
        print("null" if v is None else (json.dumps(v) if isinstance(v, (list, dict, bool)) else v))' "$@"
}

# check_outputs RESULTS DIR: every output listed is the exact bytes the server serves at
# its URL (fetched again until whole: the mock may be injecting download faults).
check_outputs() {
    python3 - "$1" "$2" <<'PY' > "$T/pairs"
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    for f, u in zip(r["outputs"], r["output_urls"]):
        print(sys.argv[2] + "/" + f, u)
PY
    local bad=0 n=0
    while read -r f u; do
        n=$((n + 1))
        curl -sf --retry 20 --retry-all-errors --retry-delay 0 -o "$T/ref" "$u" && cmp -s "$f" "$T/ref" ||
            { bad=$((bad + 1)); echo "differs: $f" >&2; }
    done < "$T/pairs"
    expect_eq "$bad" 0 "outputs byte-identical to what the server served ($n files)"
}
