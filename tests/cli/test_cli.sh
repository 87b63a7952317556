#!/usr/bin/env bash
# The command line: help, version, usage errors, validate, status and run --dry-run,
# with exact exit codes and messages that name file:line:column and the job.
. "$(dirname "$0")/../lib.sh"

# --- help, version, usage ---
run "$SEEDBATCH" --help; expect_rc 0 "--help"
expect_in "$T/out" "  run        run to completion" "--help lists run"
expect_in "$T/out" "75 interrupted or locked" "--help lists exit codes"
run "$SEEDBATCH" --version; expect_rc 0 "--version"; expect_in "$T/out" "seedbatch 0.1.0" "--version text"
# The allocator the build links (mimalloc unless built with sanitizers or -DMIMALLOC=OFF)
# is the one serving malloc(): it has to come first in the symbol lookup.
if [ -n "${MIMALLOC:-}" ]; then
    expect_in "$T/out" "allocator: mimalloc 2." "--version: mimalloc serves malloc()"
else
    expect_in "$T/out" "allocator: system malloc" "--version: the system's malloc"
fi
run "$SEEDBATCH"; expect_rc 2 "no arguments"
run "$SEEDBATCH" frobnicate x.yaml; expect_rc 2 "unknown command"; expect_in "$T/err" "unknown command 'frobnicate'" "unknown command message"
run "$SEEDBATCH" validate; expect_rc 2 "validate without manifest"; expect_in "$T/err" "needs at least one manifest" "missing manifest message"
run "$SEEDBATCH" run --concurrency 0 "$JOBS/demo.yaml"; expect_rc 2 "--concurrency 0"
run "$SEEDBATCH" run --rps fast "$JOBS/demo.yaml"; expect_rc 2 "--rps fast"
run "$SEEDBATCH" run --retry-failed=sometimes "$JOBS/demo.yaml"; expect_rc 2 "--retry-failed bad kind"
run "$SEEDBATCH" run --log-format xml "$JOBS/demo.yaml"; expect_rc 2 "--log-format xml"
run "$SEEDBATCH" run --bogus "$JOBS/demo.yaml"; expect_rc 2 "unknown option"
run "$SEEDBATCH" status --state "$T/s.db" "$JOBS/demo.yaml" "$JOBS/marketing.yaml"; expect_rc 2 "--state with two manifests"
# Help and options per command: a command's help shows its own options only; one that does
# not apply is exit 2 naming it; short flags; --retry-failed KIND with a space.
run "$SEEDBATCH" validate --help; expect_rc 0 "validate --help"
expect_in "$T/out" "usage: seedbatch validate [OPTIONS] MANIFEST..." "validate --help usage"
expect_in "$T/out" "--log-format FMT" "validate --help: a common option"
expect_not_in "$T/out" "--concurrency" "validate --help: no run option"
expect_not_in "$T/out" "--charges" "validate --help: no status option"
run "$SEEDBATCH" help status; expect_rc 0 "help status"
expect_in "$T/out" "usage: seedbatch status [OPTIONS] MANIFEST..." "help status usage"
expect_in "$T/out" "--json" "help status: --json"
expect_not_in "$T/out" "--dry-run" "help status: no run option"
run "$SEEDBATCH" run -h; expect_rc 0 "run -h"
expect_in "$T/out" "-j, --concurrency N" "run -h: -j"
expect_in "$T/out" "-n, --dry-run" "run -h: -n"
expect_in "$T/out" "--retry-failed[=KIND]" "run -h: --retry-failed"
run "$SEEDBATCH" --help; expect_not_in "$T/out" "--charges" "--help: command options left to the command's help"
run "$SEEDBATCH" validate --dry-run --concurrency 3 --retry-failed "$JOBS/demo.yaml"; expect_rc 2 "validate --dry-run"
expect_in "$T/err" "seedbatch: --dry-run is not an option of validate" "validate --dry-run: named"
expect_in "$T/err" "Try 'seedbatch validate --help'." "validate --dry-run: points to the command's help"
run "$SEEDBATCH" validate -j 3 "$JOBS/demo.yaml"; expect_rc 2 "validate -j"
expect_in "$T/err" "--concurrency is not an option of validate" "validate -j: named by its long name"
run "$SEEDBATCH" run --charges "$JOBS/demo.yaml"; expect_rc 2 "run --charges"
expect_in "$T/err" "--charges is not an option of run" "run --charges: named"
run "$SEEDBATCH" status --max-cost 3 "$JOBS/demo.yaml"; expect_rc 2 "status --max-cost"
run "$SEEDBATCH" status -x "$JOBS/demo.yaml"; expect_rc 2 "unknown short option"
expect_in "$T/err" "unknown option -x" "unknown short option: named"
run "$SEEDBATCH" run -j; expect_rc 2 "-j without a value"
expect_in "$T/err" "-j needs a value" "-j without a value: said"
run "$SEEDBATCH" -V; expect_rc 0 "-V"; expect_in "$T/out" "seedbatch 0.1.0" "-V text"
run "$SEEDBATCH" status -V "$JOBS/demo.yaml"; expect_rc 0 "status -V"; expect_in "$T/out" "seedbatch 0.1.0" "status -V text"
run "$SEEDBATCH" run -n -q -j 7 "$JOBS/demo.yaml"; expect_rc 0 "run -n -q -j 7"
expect_in "$T/out" "limits: concurrency 7," "-j sets the concurrency"
expect_in "$T/out" "dry run: nothing was sent" "-n is the dry run"
run "$SEEDBATCH" run -n --retry-failed rejected "$JOBS/demo.yaml"; expect_rc 0 "--retry-failed KIND (space)"
expect_in "$T/out" "dry run: nothing was sent" "--retry-failed KIND: the kind is not read as a manifest"
expect_not_in "$T/err" "rejected" "--retry-failed KIND: no complaint about a manifest named rejected"
run "$SEEDBATCH" run -n --retry-failed=rejected "$JOBS/demo.yaml"; expect_rc 0 "--retry-failed=KIND"
run "$SEEDBATCH" run -n --retry-failed "$JOBS/demo.yaml"; expect_rc 0 "--retry-failed, no kind, then a manifest"
run "$SEEDBATCH" run "$JOBS/demo.yaml" "$JOBS/marketing.yaml" "$JOBS/../jobs/demo.yaml"; expect_rc 2 "one manifest given twice"
expect_in "$T/err" "$JOBS/demo.yaml is given twice (as $JOBS/demo.yaml and $JOBS/../jobs/demo.yaml)" "one manifest given twice: message"

# --- validate: the bundled examples ---
for f in demo catalog ecommerce marketing runcomfy; do
    run "$SEEDBATCH" validate "$JOBS/$f.yaml"; expect_rc 0 "validate $f"
done
run "$SEEDBATCH" validate "$JOBS/catalog.yaml"
expect_in "$T/out" "catalog.yaml: ok: 3 jobs, 4 local files, up to 4 output images" "the catalogue example: a job per row"
# A catalogue's problems: every row's, each with the manifest's place, the data file and its line.
mkdir -p "$T/cat"
"$GEN_IMAGE" png 32 32 "$T/cat/a.png"
printf 'sku,title,n\nA,ok,1\nB,,1\nC,"two\nlines",x\nD,short\n,nameless,1\n' > "$T/cat/c.csv"
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\njobs:\n' > "$T/cat/m.yaml"
printf '  - from: c.csv\n    id: "{sku}"\n    prompt: "A {title} {{x}}"\n    images: [a.png]\n    params: {max_images: "{n}"}\n' >> "$T/cat/m.yaml"
run "$SEEDBATCH" validate "$T/cat/m.yaml"; expect_rc 2 "validate a catalogue with bad rows"
expect_in "$T/err" "m.yaml:7:13: job B (c.csv:3): {title} is empty" "an empty value: its row"
expect_in "$T/err" "m.yaml:9:14: job C (c.csv:4): max_images must be an integer from 1 to 15" "a param of a row spanning two lines"
expect_in "$T/err" "m.yaml:5:11: c.csv:6: has 2 fields where the header has 3" "a short row"
expect_in "$T/err" "m.yaml:6:9: job #5 (c.csv:7): {sku} is empty" "an empty id"
expect_eq "$(grep -c 'error: ' "$T/err")" 5 "one error per problem, the summary besides"
run "$SEEDBATCH" validate "$JOBS/demo.yaml"
expect_in "$T/out" "ok: 4 jobs, 5 local files, up to 9 output images" "validate demo summary"
run "$SEEDBATCH" validate "$JOBS/demo.yaml" "$JOBS/marketing.yaml"; expect_rc 0 "validate two manifests"
expect_in "$T/out" "marketing.yaml: ok: 3 jobs, 2 local files, up to 12 output images" "second manifest summary"

# --- validate: bad manifests name file:line:column and the job ---
mkdir -p "$T/m/img"
"$GEN_IMAGE" png 64 64 "$T/m/img/a.png"
"$GEN_IMAGE" png 64 3 "$T/m/img/flat.png"
echo "not an image" > "$T/m/img/fake.jpg"
HEAD='version: 1
provider: atlascloud
model: bytedance/seedream-v5.0-lite/edit-sequential'
# --- one reading or two: what the checks log appears once either way ---
# With jobs as the last key the manifest is read once, its log held back until that
# is known to hold; with a key after jobs it is read twice and the first reading's log
# is dropped; past 256 KiB of held log it is read twice too.
warn_jobs() { for i in $(seq 1 "$1"); do printf '  - {id: w%d, prompt: hello, images: [img/a.png], params: {shiny: %d}}\n' "$i" "$i"; done; }
{ echo "$HEAD"; echo "jobs:"; warn_jobs 3; } > "$T/m/warn_last.yaml"
{ echo "version: 1"; echo "jobs:"; warn_jobs 3; echo "provider: atlascloud"; echo "model: bytedance/seedream-v5.0-lite/edit-sequential"; } > "$T/m/warn_after.yaml"
{ echo "$HEAD"; echo "jobs:"; warn_jobs 3000; } > "$T/m/warn_many.yaml"
for c in "last once 3" "after twice 3" "many twice 3000"; do
    set -- $c
    run "$SEEDBATCH" validate --debug "$T/m/warn_$1.yaml"; expect_rc 0 "validate warn_$1"
    expect_in "$T/err" "warn_$1.yaml: read $2" "warn_$1 is read $2"
    expect_eq "$(grep -c 'param shiny is not known' "$T/err")" "$3" "warn_$1: each warning once"
done
{ echo "$HEAD"; echo "jobs:"; warn_jobs 2; echo "  - {id: bad, prompt: x, images: [img/a.png], params: {max_images: 40}}"; } > "$T/m/err_last.yaml"
{ echo "version: 1"; echo "jobs:"; warn_jobs 2; echo "  - {id: bad, prompt: x, images: [img/a.png], params: {max_images: 40}}"; echo "provider: atlascloud"; echo "model: bytedance/seedream-v5.0-lite/edit-sequential"; } > "$T/m/err_after.yaml"
for w in last after; do
    run "$SEEDBATCH" validate "$T/m/err_$w.yaml"; expect_rc 2 "validate err_$w"
    expect_eq "$(grep -c 'max_images must be an integer' "$T/err")" 1 "err_$w: the error once"
    expect_eq "$(grep -c 'param shiny is not known' "$T/err")" 2 "err_$w: the warnings once"
done

# One validate tells every problem of the manifest: an unknown key does not hide the limits
# or the jobs, a job's bad URL does not hide its missing file, params are checked on a job
# with other errors; an unknown model is an error with "did you mean", and so is a key.
cat > "$T/m/all.yaml" <<'EOF2'
version: 1
provider: atlascloud
model: bytedance/seedream-v5.0-lite/edti
output_dir: out
colour: blue
limitz: {concurrency: 3}
limits: {concurrency: 0}
jobs:
  - id: a
    prompt: "one"
    images: ["ftp://example.com/x.jpg", missing.jpg]
  - id: c
    prompt: ""
    images: [img/a.png]
EOF2
run "$SEEDBATCH" validate "$T/m/all.yaml"; expect_rc 2 "validate: every problem at once"
expect_in "$T/err" "all.yaml:5:1: unknown key colour in the manifest (known:" "one pass: the unknown key"
expect_in "$T/err" "all.yaml:6:1: unknown key limitz in the manifest: did you mean limits? (known:" "one pass: did you mean, for a key"
expect_in "$T/err" "all.yaml:3:8: model bytedance/seedream-v5.0-lite/edti is not one seedbatch knows for Atlas Cloud (did you mean bytedance/seedream-v5.0-lite/edit?); a model the provider added since runs with allow_unknown_model: true" "one pass: the misspelt model is an error"
expect_in "$T/err" "all.yaml:7:23: limits.concurrency must be from 1 to 10000" "one pass: the limits"
expect_in "$T/err" "all.yaml:11:14: job a: only http and https URLs are allowed: ftp://example.com/x.jpg" "one pass: the job's URL"
expect_in "$T/err" "all.yaml:9:5: job a: image 2: cannot read $T/m/missing.jpg: No such file or directory" "one pass: ... and its missing file"
expect_in "$T/err" "all.yaml:12:5: job c: prompt is required and must not be empty" "one pass: the other job"
expect_eq "$(grep -c 'error:' "$T/err")" 8 "one pass: seven problems and the summary"
# A model the provider added since: allowed by the manifest, warned about, params unchecked.
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v6.0/edit\nallow_unknown_model: true\njobs:\n  - {id: n, prompt: new, images: [img/a.png], params: {fancy: 1}}\n' > "$T/m/newmodel.yaml"
run "$SEEDBATCH" validate "$T/m/newmodel.yaml"; expect_rc 0 "allow_unknown_model: true"
expect_in "$T/err" "warning: $T/m/newmodel.yaml:3:8: model bytedance/seedream-v6.0/edit is not one seedbatch knows for Atlas Cloud: its params are not checked" "allow_unknown_model: warned"
sed -i 's/allow_unknown_model: true/allow_unknown_model: sometimes/' "$T/m/newmodel.yaml"
run "$SEEDBATCH" validate "$T/m/newmodel.yaml"; expect_rc 2 "allow_unknown_model must be a boolean"
expect_in "$T/err" "newmodel.yaml:4:22: allow_unknown_model must be true or false" "allow_unknown_model: a bad value named"
# A param in defaults warned once for all its jobs, with "did you mean" and the count.
{ echo "$HEAD"; echo "defaults: {output_fromat: png}"; echo "jobs:"; for i in $(seq 1 500); do printf '  - {id: d%d, prompt: hello, images: [img/a.png]}\n' "$i"; done; } > "$T/m/defaults.yaml"
run "$SEEDBATCH" validate "$T/m/defaults.yaml"; expect_rc 0 "validate: an unknown param in defaults is a warning"
expect_eq "$(grep -c 'output_fromat' "$T/err")" 1 "defaults: one line for 500 jobs"
expect_in "$T/err" "defaults.yaml:4:12: param output_fromat is not known for bytedance/seedream-v5.0-lite/edit-sequential: did you mean output_format? (passed through unchecked) (for 500 jobs, the first d1)" "defaults: did you mean, and the count"

bad() { # bad NAME WANT (manifest text on stdin)
    cat > "$T/m/$1.yaml"
    run "$SEEDBATCH" validate "$T/m/$1.yaml"
    expect_rc 2 "validate $1"
    expect_in "$T/err" "$2" "validate $1 message"
    expect_in "$T/err" "is invalid; nothing was sent" "validate $1 says nothing was sent"
}
bad size "$T/m/size.yaml:10:7: job j1: size must be one of" <<EOF2
$HEAD
jobs:
  - id: j1
    prompt: hello
    images: [img/a.png]
    params:
      max_images: 2
      size: 1024x1024
EOF2
bad maximg "$T/m/maximg.yaml:8:14: job j2: max_images must be an integer from 1 to 15" <<EOF2
$HEAD
jobs:
  - id: j2
    prompt: hello
    images: [img/a.png]
    params: {max_images: 40}
EOF2
# Atlas's base64 outputs and sync mode defeat a polling runner: refused where they are set.
bad base64 "$T/m/base64.yaml:10:14: job j6: enable_base64_output: true makes the outputs base64 text" <<EOF2
$HEAD
defaults:
  size: "2048*2048"
jobs:
  - id: j6
    prompt: hello
    images: [img/a.png]
    params: {enable_base64_output: true}
EOF2
bad sync "$T/m/sync.yaml:5:3: job j7: enable_sync_mode: true makes the submit wait" <<EOF2
$HEAD
defaults:
  enable_sync_mode: true
jobs:
  - {id: j7, prompt: hello, images: [img/a.png]}
EOF2
# Atlas /edit takes a free W*H size; edit-sequential its presets only.
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit\njobs:\n  - {id: e1, prompt: hi, images: [img/a.png], params: {size: "1536*2048"}}\n' > "$T/m/edit_size.yaml"
run "$SEEDBATCH" validate "$T/m/edit_size.yaml"; expect_rc 0 "/edit with a free size"
bad editsize "$T/m/editsize.yaml:5:56: job e2: size must be \"W*H\" with each side from 1024 to 4096 in steps of 64" \
    < <(printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit\njobs:\n  - {id: e2, prompt: hi, images: [img/a.png], params: {size: "1000*2048"}}\n')
bad noprompt "$T/m/noprompt.yaml:8:5: job j3: prompt is required" <<EOF2
$HEAD
jobs:
  - id: ok
    prompt: fine
    images: [img/a.png]
  - id: j3
    images: [img/a.png]
EOF2
bad types "$T/m/types.yaml:5:16: limits.concurrency must be a whole number" <<EOF2
$HEAD
limits:
  concurrency: [1, 2]
jobs:
  - {id: j4, prompt: x, images: [img/a.png]}
EOF2
# A tab where YAML wants spaces: libyaml names no character; the message does.
bad tab "$T/m/tab.yaml:5:1: YAML syntax error: found character that cannot start any token while scanning for the next token (a tab: YAML indents with spaces only)" \
    < <(printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\njobs:\n\t- {id: a, prompt: x, images: [img/a.png]}\n')
bad at "$T/m/at.yaml:5:21: YAML syntax error: found character that cannot start any token while scanning for the next token" \
    < <(printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\njobs:\n  - {id: a, prompt: @x, images: [img/a.png]}\n')
expect_not_in "$T/err" "a tab:" "no tab hint where there is no tab"
bad escape "$T/m/escape.yaml:5:9: job ../../x: id \"../../x\" is not valid" <<EOF2
$HEAD
jobs:
  - id: ../../x
    prompt: x
    images: [img/a.png]
EOF2
bad scheme "$T/m/scheme.yaml:7:14: job j5: only http and https URLs are allowed: file:///etc/passwd" <<EOF2
$HEAD
jobs:
  - id: j5
    prompt: x
    images: [file:///etc/passwd]
EOF2
bad cycle "$T/m/cycle.yaml:4:11: alias *a is undefined or refers to a node that contains it" <<EOF2
$HEAD
loop: &a [*a]
jobs: []
EOF2
bad syntax "$T/m/syntax.yaml:6:4: YAML syntax error" <<EOF2
$HEAD
jobs:
  - id: x
   prompt: y
EOF2
python3 -c "print('[' * 10000 + ']' * 10000)" > "$T/m/deep.yaml"
run "$SEEDBATCH" validate "$T/m/deep.yaml"; expect_rc 2 "deep nesting"; expect_in "$T/err" "deep.yaml:1:65: nesting deeper than 64 levels" "deep nesting message"
python3 - "$T/m/bomb.yaml" <<'EOF2'
import sys
lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
for i in range(1, 9):
    p, c = chr(96 + i), chr(97 + i)
    lines.append(f'{c}: &{c} [' + ','.join(['*' + p] * 9) + ']')
open(sys.argv[1], 'w').write('\n'.join(lines) + '\n')
EOF2
run "$SEEDBATCH" validate "$T/m/bomb.yaml"; expect_rc 2 "billion laughs"; expect_in "$T/err" "(an alias bomb?); refused" "billion laughs message"
# 33 MiB of one value: stopped after 32 MiB, where the value began.
head -c $((33 * 1024 * 1024)) /dev/zero | tr '\0' 'a' > "$T/m/huge.yaml"
run "$SEEDBATCH" validate "$T/m/huge.yaml"; expect_rc 2 "huge value"
expect_in "$T/err" "huge.yaml:1:1: 32 MiB of text after this point hold no complete value (a value may be at most 1048576 bytes)" "huge value message"
# A large catalogue with long prompts of its own (34 MiB: 12,000 jobs) is read as a stream.
python3 - "$T/m/large.yaml" <<'EOF2'
import sys
words = "keep the product centred, soft daylight from the left, white marble table, no text, "
with open(sys.argv[1], "w") as f:
    f.write("version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\njobs:\n")
    for i in range(12000):
        f.write(f'  - {{id: sku-{i}, prompt: "{(f"sku {i}: " + words * 40)[:2900]}", images: ["https://cdn.example.com/{i}.jpg"]}}\n')
EOF2
[ "$(stat -c %s "$T/m/large.yaml")" -gt $((34 * 1024 * 1024)) ] && pass || fail "large.yaml is not over 34 MiB"
run "$SEEDBATCH" validate "$T/m/large.yaml"; expect_rc 0 "a 34 MiB manifest"
expect_in "$T/out" "ok: 12000 jobs" "all its jobs read"
# Long comments (jobs commented out by the thousand) are no value: 6 MiB of them are fine.
python3 - "$T/m/comments.yaml" <<'EOF2'
import sys
with open(sys.argv[1], "w") as f:
    f.write("version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\njobs:\n")
    for i in range(60000):
        f.write(f'#  - {{id: old-{i}, prompt: "an edit we no longer run, number {i}", images: [x.jpg]}}\n')
    f.write('  - {id: kept, prompt: "the one job", images: ["https://cdn.example.com/1.jpg"]}\n')
EOF2
run "$SEEDBATCH" validate "$T/m/comments.yaml"; expect_rc 0 "6 MiB of comments"
expect_in "$T/out" "ok: 1 job," "the job after them read"
rm -f "$T/m/large.yaml" "$T/m/huge.yaml" "$T/m/comments.yaml"
run "$SEEDBATCH" validate "$T/m/missing.yaml"; expect_rc 2 "missing manifest"; expect_in "$T/err" "cannot read manifest $T/m/missing.yaml: No such file or directory" "missing manifest message"

# RunComfy with local files and no way to publish them: validate says what to set.
cat > "$T/m/rc.yaml" <<EOF2
version: 1
provider: runcomfy
model: bytedance/seedream-5/lite/edit
jobs:
  - id: rc1
    prompt: x
    images: [img/a.png]
EOF2
run "$SEEDBATCH" validate "$T/m/rc.yaml"; expect_rc 2 "runcomfy local file"
expect_in "$T/err" "rc.yaml:7:14: job rc1: local file img/a.png cannot be sent: RunComfy has no upload call. Set media.upload: url_prefix and media.url_prefix" "runcomfy message"

# --- bad images fail only their job; validate reports each and exits 2 ---
cat > "$T/m/imgs.yaml" <<EOF2
$HEAD
output_dir: out
jobs:
  - {id: good, prompt: x, images: [img/a.png]}
  - {id: flat, prompt: x, images: [img/a.png, img/flat.png]}
  - {id: fake, prompt: x, images: [img/fake.jpg]}
  - {id: gone, prompt: x, images: [img/nothere.png]}
EOF2
run "$SEEDBATCH" validate "$T/m/imgs.yaml"; expect_rc 2 "validate bad images"
expect_in "$T/err" "imgs.yaml:7:5: job flat: image 2: $T/m/img/flat.png: 64x3 pixels; width and height must be over 14" "flat image"
expect_in "$T/err" "imgs.yaml:8:5: job fake: image 1: $T/m/img/fake.jpg: not an image of a supported format" "fake image"
expect_in "$T/err" "imgs.yaml:9:5: job gone: image 1: cannot read $T/m/img/nothere.png: No such file or directory" "missing image"
expect_not_in "$T/err" "job good" "good job not reported"
expect_in "$T/out" "4 jobs, 3 with an unusable reference image" "bad image summary"
# A path that a shell would have expanded, or with a stray space, gets a hint.
mkdir -p "$T/m/~"
printf '%s\noutput_dir: out\njobs:\n  - {id: t, prompt: x, images: [~/a.png]}\n  - {id: v, prompt: x, images: ["$HOME/a.png"]}\n  - {id: s, prompt: x, images: ["img/a.png "]}\n  - {id: h, prompt: x, images: [~/b.png]}\n' "$HEAD" > "$T/m/hint.yaml"
cp "$T/m/img/a.png" "$T/m/~/b.png"
run "$SEEDBATCH" validate "$T/m/hint.yaml"; expect_rc 2 "validate paths a shell would expand"
expect_in "$T/err" "hint.yaml:6:5: job t: image 1: cannot read $T/m/~/a.png: No such file or directory (~ is taken as written, not as the home directory: give the path in full, or relative to the manifest)" "~ hint"
expect_in "$T/err" "hint.yaml:7:5: job v: image 1: cannot read $T/m/\$HOME/a.png: No such file or directory (\$ is taken as written: environment variables are not expanded in manifests)" "\$ hint"
expect_in "$T/err" "hint.yaml:8:5: job s: image 1: cannot read $T/m/img/a.png : No such file or directory (a name in the path begins or ends with a space)" "space hint"
expect_not_in "$T/err" "job h:" "a file under a directory named ~ is read as written"
expect_in "$T/out" "4 jobs, 3 with an unusable reference image" "hint summary"
# An invalid manifest shows its jobs' unusable images too: one validate, every problem.
# Once with the jobs last (one reading), once with a key after them (two readings).
printf '%s\njobs:\n  - {id: gone, prompt: x, images: [img/nothere.png]}\n  - {id: ftp, prompt: x, images: ["ftp://h/a.png"]}\n' "$HEAD" > "$T/m/both.yaml"
printf '%s\njobs:\n  - {id: gone, prompt: x, images: [img/nothere.png]}\n  - {id: ftp, prompt: x, images: ["ftp://h/a.png"]}\noutput_dir: out\n' "$HEAD" > "$T/m/both2.yaml"
for f in both both2; do
    run "$SEEDBATCH" validate "$T/m/$f.yaml"; expect_rc 2 "$f: an invalid manifest with a missing image"
    expect_in "$T/err" "$f.yaml:6:35: job ftp: only http and https URLs are allowed: ftp://h/a.png" "$f: the manifest error"
    expect_in "$T/err" "$f.yaml:5:5: job gone: image 1: cannot read $T/m/img/nothere.png: No such file or directory" "$f: the missing image, told too"
    expect_eq "$(grep -c 'job gone' "$T/err")" 1 "$f: told once"
done
# A FIFO named as an image is refused at once; opening it would wait for a writer forever.
mkfifo "$T/m/img/pipe.jpg"
printf '%s\noutput_dir: out\njobs:\n  - {id: pipe, prompt: x, images: [img/pipe.jpg]}\n' "$HEAD" > "$T/m/fifo.yaml"
run timeout 20 "$SEEDBATCH" validate "$T/m/fifo.yaml"; expect_rc 2 "validate an image that is a FIFO"
expect_in "$T/err" "fifo.yaml:6:5: job pipe: image 1: cannot read $T/m/img/pipe.jpg: not a regular file" "FIFO image"

# api_key_file readable by others is refused.
echo "sk-secret-value" > "$T/m/key"; chmod 644 "$T/m/key"
printf '%s\napi_key_file: key\njobs:\n  - {id: k, prompt: x, images: [img/a.png]}\n' "$HEAD" > "$T/m/key.yaml"
run "$SEEDBATCH" validate "$T/m/key.yaml"; expect_rc 2 "key file mode 644"
expect_in "$T/err" "is readable by group or others (mode 644): run chmod 600 on it" "key file message"
expect_not_in "$T/err" "sk-secret-value" "key not printed"
chmod 600 "$T/m/key"
run "$SEEDBATCH" validate "$T/m/key.yaml"; expect_rc 0 "key file mode 600"
# An empty key file (or one of blanks only) is named as such, not as "no API key: set ...".
printf ' \r\n\n' > "$T/m/key"
run "$SEEDBATCH" validate "$T/m/key.yaml"; expect_rc 2 "empty key file: validate"
expect_in "$T/err" "api_key_file $T/m/key is empty: put the API key in it" "empty key file: validate says so"
ATLASCLOUD_BASE_URL="http://127.0.0.1:9/api/v1" run "$SEEDBATCH" run --progress never "$T/m/key.yaml"; expect_rc 2 "empty key file: run"
expect_in "$T/err" "api_key_file $T/m/key is empty: put the API key in it" "empty key file: run says so"
echo "sk-secret-value" > "$T/m/key"

# --- dry-run: the plan and cost quote; nothing is written or sent ---
cp -r "$JOBS/demo.yaml" "$JOBS/demo-media" "$T/"
export ATLASCLOUD_BASE_URL="http://127.0.0.1:9/api/v1" ATLASCLOUD_API_KEY="sk-dry-run-key"
run "$SEEDBATCH" run --dry-run "$T/demo.yaml"; expect_rc 0 "dry-run demo"
expect_in "$T/out" "jobs: 4 in the manifest; 4 to submit, 0 to resume, 0 already succeeded, 0 failed (0 on a bad image), 0 cancelled" "dry-run job counts"
expect_in "$T/out" "reference images: 8 (8 local in 5 distinct files, 0 remote URLs); uploads needed: 5" "dry-run images"
expect_in "$T/out" "cost quote: 9 images x \$0.0320 = \$0.29" "dry-run quote"
expect_in "$T/out" "max_cost \$1.00: within budget" "dry-run max_cost"
expect_in "$T/out" "job sku-1001-red: 2 reference images -> up to 3 outputs" "dry-run job line"
expect_in "$T/out" "dry run: nothing was sent" "dry-run footer"
expect_not_in "$T/out" "sk-dry-run-key" "dry-run hides key"
[ ! -e "$T/demo.out" ] && pass || fail "dry-run created the output directory"
run "$SEEDBATCH" run --dry-run --concurrency 7 --rps 0 "$T/demo.yaml"
expect_in "$T/out" "limits: concurrency 7, 0 requests/s (unlimited)" "dry-run overrides"

# --- status and dry-run against an existing state ---
run "$SEEDBATCH" status "$T/demo.yaml"; expect_rc 1 "status before any run: unfinished is exit 1"
expect_in "$T/out" "(no run yet)" "status no run"
expect_in "$T/out" "jobs: 4, pending 4, uploading 0, submitting 0, running 0, downloading 0, succeeded 0, failed 0, cancelled 0" "status counts before"
# results before any run: nothing to write from, said so; whether or not the output directory
# is there, and an older results.jsonl (its state removed since) is left as it was.
run "$SEEDBATCH" results "$T/demo.yaml"; expect_rc 2 "results before any run"
expect_in "$T/err" "demo.yaml: no run yet (no state at $T/demo.out/.seedbatch/state.db): $T/demo.out/results.jsonl not written" "results before any run: message"
[ ! -e "$T/demo.out" ] && pass || fail "results before any run created the output directory"
mkdir -p "$T/demo.out/.seedbatch"; echo '{"id":"old"}' > "$T/demo.out/results.jsonl"
run "$SEEDBATCH" results "$T/demo.yaml"; expect_rc 2 "results with the state removed"
[ "$(cat "$T/demo.out/results.jsonl")" = '{"id":"old"}' ] && pass || fail "results overwrote results.jsonl without a state"
# A state that is not a database (damaged, or another file under that name): each command
# names it and says what moving it away would cost; the file is left as it was.
head -c 8192 /dev/urandom > "$T/demo.out/.seedbatch/state.db"; cp "$T/demo.out/.seedbatch/state.db" "$T/notadb"
for c in status results "run --progress never"; do
    run "$SEEDBATCH" $c "$T/demo.yaml"
    want=2; [ "$c" = "run --progress never" ] && want=1
    expect_rc $want "$c on a state that is not a database"
    expect_in "$T/err" "$T/demo.out/.seedbatch/state.db: file is not a database (the state is damaged, or not seedbatch's; moved away, the batch starts afresh and every job in it is paid for again)" "$c on a state that is not a database: message"
done
cmp -s "$T/notadb" "$T/demo.out/.seedbatch/state.db" && pass || fail "a state that is not a database was changed"
# A state emptied to 0 bytes, or another program's database under its name, holds no
# schema: refused the same way by every command (before, a run took it for a new batch
# and paid for every job again).
for kind in empty foreign; do
    rm -f "$T/demo.out/.seedbatch/state.db"*
    if [ $kind = empty ]; then : > "$T/demo.out/.seedbatch/state.db"; else sqlite3 "$T/demo.out/.seedbatch/state.db" "CREATE TABLE photos(name TEXT)"; fi
    cp "$T/demo.out/.seedbatch/state.db" "$T/before"
    for c in status "run --dry-run" results "run --progress never"; do
        run "$SEEDBATCH" $c "$T/demo.yaml"
        want=2; [ "$c" = "run --progress never" ] && want=1
        expect_rc $want "$c on a state with no schema ($kind)"
        expect_in "$T/err" "$T/demo.out/.seedbatch/state.db: not a seedbatch state: it holds no schema (an empty file, or another program's database) (the state is damaged, or not seedbatch's; moved away, the batch starts afresh and every job in it is paid for again)" "$c on a state with no schema ($kind): message"
    done
    cmp -s "$T/before" "$T/demo.out/.seedbatch/state.db" && pass || fail "a state with no schema ($kind) was changed"
done
rm -rf "$T/demo.out"
# An output_dir or a --state directory that is a file: named with the manifest and which one it is.
: > "$T/demo.out"
run "$SEEDBATCH" run --progress never "$T/demo.yaml"; expect_rc 1 "output_dir that is a file"
expect_in "$T/err" "$T/demo.yaml: output_dir: $T/demo.out is not a directory" "output_dir that is a file: message"
rm -f "$T/demo.out"
run "$SEEDBATCH" run --progress never --state "$T/notadb/state.db" "$T/demo.yaml"; expect_rc 1 "--state under a file"
expect_in "$T/err" "$T/demo.yaml: state: $T/notadb is not a directory" "--state under a file: message"
rm -rf "$T/demo.out"
DB="$T/demo.out/.seedbatch/state.db"
run "$STORE_TOOL" sync "$T/demo.yaml" "$DB"; expect_in "$T/out" "added 4 changed 0 kept 0 invalid 0 removed 0" "sync"
sqlite3 "$DB" "UPDATE jobs SET state='succeeded', cost=0.096, error_kind=NULL, error_message=NULL WHERE id='sku-1001-red';
  INSERT INTO charges(at, job_id, fingerprint, prediction_id, images, price, cost, flagged, note)
  SELECT 0, id, fingerprint, 'p-1001', 3, 0.032, 0.096, 0, 'outputs made' FROM jobs WHERE id='sku-1001-red'"
"$STORE_TOOL" set "$DB" 1002-marble failed rejected "The request was rejected by content moderation" 0
"$STORE_TOOL" set "$DB" 1003-marble running
sqlite3 "$DB" "UPDATE jobs SET prediction_id='p-1003' WHERE id='1003-marble'"
run "$SEEDBATCH" status "$T/demo.yaml"; expect_rc 1 "status after: a failed job is exit 1"
expect_in "$T/out" "jobs: 4, pending 1, uploading 0, submitting 0, running 1, downloading 0, succeeded 1, failed 1, cancelled 0" "status counts after"
expect_in "$T/out" "spent: \$0.10 in 1 charge; still to submit: 1 job, quote \$0.06" "status spend"
expect_in "$T/out" "1002-marble: rejected: The request was rejected by content moderation" "status failure reason"
# status --json: one document per manifest, read here with Python's json module.
run "$SEEDBATCH" status --json "$T/demo.yaml" "$JOBS/marketing.yaml"; expect_rc 1 "status --json"
expect_eq "$(wc -l < "$T/out")" 2 "status --json: one line per manifest"
py_json() { python3 -c 'import json, sys
docs = [json.loads(l) for l in open(sys.argv[1])]
print(eval(sys.argv[2], {"d": docs[0], "docs": docs}))' "$T/out" "$1"; }
expect_eq "$(py_json 'd["manifest"], d["state"], d["has_run"], d["jobs"]')" "('$T/demo.yaml', '$DB', True, 4)" "status --json: manifest, state, jobs"
expect_eq "$(py_json 'd["counts"]')" "{'pending': 1, 'uploading': 0, 'submitting': 0, 'running': 1, 'downloading': 0, 'succeeded': 1, 'failed': 1, 'cancelled': 0}" "status --json: counts"
expect_eq "$(py_json 'd["finished"], d["to_submit"], d["quote_usd"]')" "(False, 1, 0.064)" "status --json: finished, to submit, quote"
expect_eq "$(py_json 'd["spend"]')" "{'spent_usd': 0.096, 'charges': 1, 'images': 3, 'flagged': 0, 'up_to_usd': 0.096, 'max_cost_usd': 1, 'left_usd': 0.904}" "status --json: spend"
expect_eq "$(py_json 'd["failures_by_kind"]')" "{'rejected': 1}" "status --json: failures by kind"
expect_eq "$(py_json 'd["failed"]')" "[{'id': '1002-marble', 'kind': 'rejected', 'message': 'The request was rejected by content moderation', 'http_status': None, 'code': None, 'attempts': 0, 'repollable': False}]" "status --json: the failed job"
expect_eq "$(py_json 'docs[1]["has_run"], docs[1]["finished"], docs[1]["failed"]')" "(False, False, [])" "status --json: a manifest with no run yet"
run "$SEEDBATCH" status --failed "$T/demo.yaml"; expect_rc 1 "status --failed"
expect_eq "$(cat "$T/out")" "$(printf '1002-marble\trejected\tThe request was rejected by content moderation')" "status --failed: the failed jobs only"
run "$SEEDBATCH" status --json --failed "$T/demo.yaml"; expect_rc 2 "--json with --failed"
# docs/reference.md documents every field status --json and results.jsonl write.
REF="${SOURCE_DIR:-$(dirname "$0")/../..}/docs/reference.md"
run "$SEEDBATCH" status --json "$T/demo.yaml"
for k in $(python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))
print(" ".join(list(d) + list(d["spend"]) + list(d["failed"][0])))' "$T/out"); do
    grep -qF "\`$k\`" "$REF" && pass || fail "docs/reference.md does not document status --json's $k"
done
run "$SEEDBATCH" results "$T/demo.yaml"; expect_rc 0 "results from the state"
for k in $(python3 -c 'import json, sys
keys = set()
for l in open(sys.argv[1]):
    d = json.loads(l); keys |= set(d); keys |= set(d["error"] or {})
print(" ".join(sorted(keys)))' "$T/demo.out/results.jsonl"); do
    grep -qF "\`$k\`" "$REF" && pass || fail "docs/reference.md does not document results.jsonl's $k"
done
run "$SEEDBATCH" run --dry-run "$T/demo.yaml"
expect_in "$T/out" "1 to submit, 1 to resume, 1 already succeeded, 1 failed (0 on a bad image)" "dry-run after progress"
expect_in "$T/out" "cost quote: 2 images x \$0.0320 = \$0.06 (already spent: \$0.10)" "dry-run quote after progress"
run "$SEEDBATCH" run --dry-run --retry-failed=rejected "$T/demo.yaml"
expect_in "$T/out" "2 to submit" "dry-run --retry-failed=rejected"
run "$SEEDBATCH" run --dry-run --retry-failed=timeout "$T/demo.yaml"
expect_in "$T/out" "1 to submit" "dry-run --retry-failed=timeout leaves rejected"
before=$(sqlite3 "$DB" "SELECT group_concat(id || state, ',') FROM jobs ORDER BY id")
run "$SEEDBATCH" status "$T/demo.yaml"
after=$(sqlite3 "$DB" "SELECT group_concat(id || state, ',') FROM jobs ORDER BY id")
expect_eq "$after" "$before" "status does not change the state"
# An edited manifest: a changed job is re-queued, a removed one reported.
sed -i 's/Change the jacket to red/Change the jacket to blue/' "$T/demo.yaml"
sed -i 's#demo-media/products/\*/front.jpg#demo-media/products/100[12]/front.jpg#' "$T/demo.yaml"
run "$SEEDBATCH" run --dry-run "$T/demo.yaml"
expect_in "$T/out" "1 job changed since the last run and will run again" "dry-run changed"
expect_in "$T/out" "1 job in the state is no longer in the manifest" "dry-run removed"
run "$SEEDBATCH" status "$T/demo.yaml"
expect_in "$T/out" "removed from the manifest: 1003-marble (running)" "status removed"
run "$STORE_TOOL" sync "$T/demo.yaml" "$DB"; expect_in "$T/out" "added 0 changed 1 kept 2 invalid 0 removed 1" "sync after edit"
expect_in "$T/out" "removed 1003-marble" "sync reports removed id"
expect_eq "$(sqlite3 "$DB" "SELECT state FROM jobs WHERE id='sku-1001-red'")" "pending" "changed job re-queued"
expect_eq "$(sqlite3 "$DB" "PRAGMA integrity_check")" "ok" "integrity"
# --log-format json: one JSON object per line
run "$SEEDBATCH" validate --log-format json "$T/m/imgs.yaml"
python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$T/err" && pass || fail "json log lines"
expect_in "$T/err" '"level":"error"' "json log level"
# ... also when the manifest itself is invalid (the verdict line too)
run "$SEEDBATCH" validate --log-format json "$T/m/types.yaml"; expect_rc 2 "json log: invalid manifest"
python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$T/err" && pass || fail "json log lines of an invalid manifest"
expect_in "$T/err" 'is invalid; nothing was sent"' "json log: the verdict as JSON"
run "$SEEDBATCH" validate --quiet "$JOBS/demo.yaml"; expect_rc 0 "quiet"
[ ! -s "$T/err" ] && pass || fail "--quiet printed to stderr"

finish
