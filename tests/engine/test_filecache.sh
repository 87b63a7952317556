#!/usr/bin/env bash
# Local files a run read and hashed are recorded in the state (device, inode, size,
# mtime, ctime): later runs, status and validate do not read them again while the
# stamp matches; any write to a file changes its ctime, and it is read again.
. "$(dirname "$0")/../lib.sh"

KEY="sk-test-$$-SECRETVALUE"
export ATLASCLOUD_API_KEY="$KEY"
D=$T/fc
DB=$D/out/.seedbatch/state.db
mkdir -p "$D/img"
for i in 1 2 3; do "$GEN_IMAGE" jpeg 64 80 "$D/img/p$i.jpg" "$i"; done
cat > "$D/m.yaml" <<'EOF'
version: 1
provider: atlascloud
model: bytedance/seedream-v5.0-lite/edit-sequential
output_dir: out
defaults: {max_images: 1, output_format: png}
limits: {concurrency: 4, requests_per_second: 0, poll_interval: 100ms}
jobs:
  - foreach: "img/p*.jpg"
    id: "job-{stem}"
    prompt: "Edit {name}"
    images: ["{path}"]
EOF
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
row_sha() { sqlite3 "$DB" "SELECT sha256 FROM files WHERE ino=$(stat -c %i "$1") AND size=$(stat -c %s "$1")"; }

# --- 1. no state yet: every file is read ---
run "$SEEDBATCH" validate "$D/m.yaml"; expect_rc 0 "validate without a state"
expect_in "$T/out" "ok: 3 jobs, 3 local files, up to 3 output images" "validate summary"
expect_not_in "$T/out" "known unchanged" "nothing known without a state"

# --- 2. a run records the files written more than 3 s before it read them, not p3 ---
sleep 3.2
"$GEN_IMAGE" jpeg 64 80 "$D/img/p3.jpg" 33 # written just now: another write could keep its stamp
start_mock --key "$KEY" --latency 50
export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "first run"
expect_eq "$(sqlite3 "$DB" "SELECT count(*) FROM files")" 2 "two files recorded"
expect_eq "$(row_sha "$D/img/p1.jpg")" "$(sha_of "$D/img/p1.jpg")" "p1 recorded with its content hash"
expect_eq "$(row_sha "$D/img/p2.jpg")" "$(sha_of "$D/img/p2.jpg")" "p2 recorded with its content hash"
expect_eq "$(sqlite3 "$DB" "SELECT width || 'x' || height || ' ' || format FROM files WHERE ino=$(stat -c %i "$D/img/p1.jpg")")" \
    "64x80 1" "p1's header recorded (JPEG, 64x80)"
expect_eq "$(row_sha "$D/img/p3.jpg")" "" "p3, written within 3 s of being read, not recorded"
expect_eq "$(stat_of uploads)" 3 "three uploads"

# --- 3. validate and status take p1 and p2 from the state; --state elsewhere does not ---
run "$SEEDBATCH" validate "$D/m.yaml"; expect_rc 0 "validate with a state"
expect_in "$T/out" "(2 of the files known unchanged from the state, not read again)" "two files not read again"
run "$SEEDBATCH" validate --state "$T/other.db" "$D/m.yaml"; expect_rc 0 "validate --state elsewhere"
expect_not_in "$T/out" "known unchanged" "another state knows nothing"
run "$SEEDBATCH" status "$D/m.yaml"; expect_rc 0 "status"
expect_in "$T/out" "succeeded" "status from the state"

# --- 4. a second run sends nothing, and records p3 now that it is steady ---
sleep 3.2
run "$SEEDBATCH" run --progress never --debug "$D/m.yaml"; expect_rc 0 "second run"
expect_in "$T/err" "local files: 1 read and hashed, 2 known unchanged" "the run read only p3"
expect_eq "$(stat_of uploads)" 3 "nothing uploaded again"
expect_eq "$(stat_of submissions)" 3 "nothing submitted again"
expect_eq "$(sqlite3 "$DB" "SELECT count(*) FROM files")" 3 "p3 recorded"
run "$SEEDBATCH" validate "$D/m.yaml"
expect_in "$T/out" "(3 of the files known unchanged from the state" "all three known"

# --- 5. p2 rewritten in place, same size, its mtime set back: read again, and its job re-run ---
old_stamp=$(stat -c '%s %y' "$D/img/p2.jpg"); old_sha=$(sha_of "$D/img/p2.jpg")
python3 - "$D/img/p2.jpg" <<'EOF'
import os, sys
p = sys.argv[1]
st = os.stat(p)
b = bytearray(open(p, "rb").read())
b[len(b) - 10] ^= 0x55 # a byte of the compressed data: the header stays readable
with open(p, "r+b") as f:
    f.write(b)
os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns)) # mtime set back to the nanosecond
EOF
expect_eq "$(stat -c '%s %y' "$D/img/p2.jpg")" "$old_stamp" "same size and mtime (ns) as before"
new_sha=$(sha_of "$D/img/p2.jpg")
[ "$new_sha" != "$old_sha" ] && pass || fail "p2's bytes changed"
run "$SEEDBATCH" validate "$D/m.yaml"
expect_in "$T/out" "(2 of the files known unchanged from the state" "p2 read again"
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "run after the edit"
expect_in "$T/err" "1 changed" "p2's job changed"
expect_eq "$(stat_of uploads)" 4 "p2 uploaded again"
expect_eq "$(stat_of submissions)" 4 "p2's job submitted again"
expect_eq "$(sqlite3 "$DB" "SELECT count(*) FROM uploads WHERE sha256='$new_sha'")" 1 "the new bytes' hash uploaded"

# --- 6. a file replaced by another of the same size (a new inode) is read again ---
cp -p "$D/img/p1.jpg" "$D/img/p1.new"
python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[-10] ^= 0x33; open(sys.argv[1], "wb").write(b)' "$D/img/p1.new"
touch -m -r "$D/img/p1.jpg" "$D/img/p1.new"
mv "$D/img/p1.new" "$D/img/p1.jpg"
run "$SEEDBATCH" run --progress never "$D/m.yaml"; expect_rc 0 "run after p1 was replaced"
expect_in "$T/err" "1 changed" "p1's job changed"
expect_eq "$(stat_of submissions)" 5 "p1's job submitted again"
expect_eq "$(grep -c "$KEY" "$DB" 2>/dev/null || true)" 0 "no key in the state"
finish
