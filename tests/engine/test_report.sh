#!/usr/bin/env bash
# The review page, where a person sees it: a mixed batch from a catalogue (succeeded,
# failed, cancelled, several outputs, subfolders, a remote reference, a prompt holding
# markup) run against the mock, its report.html opened in headless Chromium with and
# without JavaScript: the cards and their statuses, every thumbnail and link a file the
# browser loads, the filters, and a screenshot that is not blank.
. "$(dirname "$0")/../lib.sh"
command -v chromium >/dev/null && /usr/bin/python3 -c "import PIL, websocket" 2>/dev/null ||
    bash "$SOURCE_DIR/scripts/apt-install.sh" chromium python3-pil python3-websocket >/dev/null
KEY=test-key
D=$T/cat
mkdir -p "$D/photos"
"$GEN_IMAGE" jpeg 96 64 "$D/photos/s1.jpg"
"$GEN_IMAGE" png 64 96 "$D/photos/s 2.png"
"$GEN_IMAGE" png 10 100 "$D/photos/tiny.png"
"$GEN_IMAGE" png 48 48 "$D/logo.png"
start_mock --key "$KEY" --latency 100 --seed 3
export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1" ATLASCLOUD_API_KEY="$KEY"

cat > "$D/m.yaml" <<'EOF'
version: 1
provider: atlascloud
model: bytedance/seedream-v5.0-lite/edit-sequential
output_dir: out
output_name: "{id}_{k}.{ext}"
limits: {requests_per_second: 50, poll_interval: 200ms}
jobs:
  - id: held-back
    prompt: "Cancelled before it was sent."
    images: [logo.png]
EOF
# The first job is cancelled before anything is sent; the catalogue's rows come after it.
run "$SEEDBATCH" cancel "$D/m.yaml"; expect_rc 0 "cancel before the run"
printf 'sku,title,category,photo,extra,n\r\n' > "$D/cat.csv"
printf 'S1,"Boot <b>""Alpine""</b>",Shoes & Bags,photos/s1.jpg,logo.png,2\r\n' >> "$D/cat.csv"
printf 'S2,<script>alert(1)</script>,Hüte,photos/s 2.png,https://example.com/ref.png,1\r\n' >> "$D/cat.csv"
printf 'S3,Too small,Shoes & Bags,photos/tiny.png,logo.png,1\r\n' >> "$D/cat.csv"
cat >> "$D/m.yaml" <<'EOF'
  - from: cat.csv
    id: "{sku|lower}"
    output_name: "{category|slug}/{id}_{k}.{ext}"
    prompt: "Show the {title} on marble."
    images: ["{photo}", "{extra}"]
    params: {max_images: "{n}"}
EOF
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 1 "the run (one job fails)"
R=$D/out/report.html
expect_eq "$(find "$D/out" -name '*.jpg' | sort | sed "s|$D/out/||" | tr '\n' ' ')" \
    "hute/s2_1.jpg shoes-bags/s1_1.jpg shoes-bags/s1_2.jpg " "outputs in their category's folder"
expect_eq "$(grep -c 'data-job=' "$R")" 4 "a card per job"
expect_eq "$(grep -o 'data-status="[a-z]*"' "$R" | tr '\n' ' ')" \
    'data-status="cancelled" data-status="succeeded" data-status="succeeded" data-status="failed" ' \
    "statuses in manifest order"
expect_not_in "$R" "<script>alert" "markup from a catalogue is escaped"
expect_in "$R" "Show the &lt;script&gt;alert(1)&lt;/script&gt; on marble." "the prompt shown as text"
expect_in "$R" "Boot &lt;b&gt;&quot;Alpine&quot;&lt;/b&gt;" "quotes and tags escaped"
expect_in "$R" 'src="../photos/s%202.png"' "a local reference relative to the page, escaped as a URL"
expect_in "$R" 'src="https://example.com/ref.png"' "a remote reference shown by its URL"
expect_in "$R" 'width="96" height="64"' "sizes written in from the headers"
expect_in "$R" "invalid_input</b>: image 1: $D/photos/tiny.png: 10x100 pixels" "the failed job's error"

# The page in Chromium, driven over the DevTools protocol in real time (tests/engine/browser.py):
# with JavaScript, and with it turned off as a person's browser can (<noscript> then shows).
BROWSER=(/usr/bin/python3 "$SOURCE_DIR/tests/engine/browser.py")
# The thumbnails a person sees that are files (not remote), and those of them not (yet) loaded.
SHOWN="[...document.images].filter(i => getComputedStyle(i).display != 'none' && !/^https?:/.test(i.getAttribute('src') || ''))"
LOADED="$SHOWN.every(i => i.getAttribute('src') && i.complete)"
BROKEN="$SHOWN.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src') || 'no-src').join(' ')"
UNCHECK_FAILED="(() => { const b = document.querySelector('#controls input[value=failed]'); b.checked = false;
  b.dispatchEvent(new Event('input', {bubbles: true})); return document.querySelectorAll('[data-job][hidden]').length })()"
SEARCH="(() => { const q = document.getElementById('q'); q.value = 'ALPINE';
  q.dispatchEvent(new Event('input', {bubbles: true})); return document.getElementById('shown').textContent })()"
"${BROWSER[@]}" "file://$R" --until "$LOADED" "$SHOWN.length" "$BROKEN" "document.getElementById('controls').hidden" \
    "document.getElementById('shown').textContent" "$UNCHECK_FAILED" "$SEARCH" > "$T/js.txt" 2>>"$T/chrome.err"
expect_eq "$(tr '\n' '|' < "$T/js.txt")" '9|""|false|"4 of 4 shown"|1|"1 of 4 shown"|' \
    "with JavaScript: nine local thumbnails (six references, three outputs) all loaded, the filters shown, the failed filter hides the failed card, the search finds one"
# cards DOM DIR: cards, hidden cards, filters hidden, links, and the links to no file under DIR.
cards() {
    /usr/bin/python3 - "$1" "$2" <<'PY'
import html.parser, json, os, sys, urllib.parse
class P(html.parser.HTMLParser):
    cards = hidden = 0
    controls_hidden = None
    links = []
    def handle_starttag(self, tag, a):
        a = dict(a)
        if "data-job" in a:
            self.cards += 1
            self.hidden += "hidden" in a
        if a.get("id") == "controls":
            self.controls_hidden = "hidden" in a
        for k in ("src", "href"):
            if k in a and tag in ("img", "a"):
                self.links.append(a[k])
p = P()
p.feed(json.loads(open(sys.argv[1]).readline()))
missing = [l for l in p.links if not l.startswith("http")
           and not os.path.isfile(os.path.join(sys.argv[2], urllib.parse.unquote(l)))]
print(p.cards, p.hidden, p.controls_hidden, len(p.links), "missing:", " ".join(missing))
PY
}
"${BROWSER[@]}" "file://$R" --nojs --until "$LOADED" "document.documentElement.outerHTML" "$SHOWN.length" "$BROKEN" \
    > "$T/nojs.txt" 2>>"$T/chrome.err"
expect_eq "$(cards "$T/nojs.txt" "$D/out")" "4 0 True 20 missing: " \
    "no JavaScript: 4 cards, none hidden, filters hidden, 20 links, each a file"
expect_eq "$(sed -n '2,3p' "$T/nojs.txt" | tr '\n' '|')" '9|""|' "no JavaScript: the nine thumbnails load"

# A screenshot that is not blank: the page's colours, and the thumbnails' many more.
"${BROWSER[@]}" "file://$R" --size 1280x900 --until "$LOADED" --screenshot "$T/shot.png" >/dev/null 2>>"$T/chrome.err"
colours=$(/usr/bin/python3 -c 'import sys; from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB"); print(im.size[0], im.size[1], len(set(im.getdata())) > 500)' "$T/shot.png")
expect_eq "$colours" "1280 900 True" "the screenshot shows the page and its images"

# seedbatch report rewrites it from the state; --out elsewhere links relative to there.
rm "$R"
run "$SEEDBATCH" report "$D/m.yaml"; expect_rc 0 "report"
expect_in "$T/out" "$D/out/report.html written (4 jobs)" "report says where"
expect_eq "$(grep -c 'data-job=' "$R")" 4 "rewritten with its cards"
expect_in "$R" '<p class="meta">1 attempt &middot; $0.064 &middot; 0.1 s</p>' "attempts, cost and time of a card"
expect_in "$R" '<span>4 jobs</span><span class="n-succeeded">2 succeeded</span><span class="n-failed">1 failed</span><span class="n-cancelled">1 cancelled</span><span>3 images written</span><span>spend $0.10</span>' \
    "the header: jobs per status, images, spend"
# A job the state flags possible_duplicate says so on its card.
sqlite3 "$D/out/.seedbatch/state.db" "UPDATE jobs SET possible_duplicate=1 WHERE id='s2'"
run "$SEEDBATCH" report "$D/m.yaml"; expect_rc 0 "report after a flag"
expect_eq "$(grep -c 'possible duplicate' "$R")" 1 "one card flagged possible duplicate"
expect_in "$R" '$0.032 &middot; 0.1 s &middot; <b class="dup">possible duplicate</b>' "on s2's card"
run "$SEEDBATCH" report -o "$T/elsewhere/r.html" "$D/m.yaml"; expect_rc 0 "report --out"
expect_in "$T/elsewhere/r.html" 'href="../cat/out/shoes-bags/s1_2.jpg"' "an output linked from the other folder"
expect_in "$T/elsewhere/r.html" 'src="../cat/photos/s1.jpg"' "a reference linked from the other folder"
# No room for the page: said, exit 1, no page and no temporary file left (a 4 KiB tmpfs).
mkdir -p "$T/tiny"
unshare -m bash -c "mount -t tmpfs -o size=4k tmpfs '$T/tiny' && '$SEEDBATCH' report -o '$T/tiny/r.html' '$D/m.yaml' \
    >/dev/null 2>'$T/tiny.err'; echo \$? > '$T/tiny.rc'; ls -A '$T/tiny' > '$T/tiny.ls'"
expect_eq "$(cat "$T/tiny.rc")" 1 "a full disk: exit 1"
expect_in "$T/tiny.err" "cannot write $T/tiny/.r.html.tmp: No space left on device" "a full disk: said"
expect_eq "$(cat "$T/tiny.ls")" "" "a full disk: nothing left behind"
run "$SEEDBATCH" report -o "$T/x.html" "$D/m.yaml" "$D/m.yaml"; expect_rc 2 "--out with two manifests"
expect_in "$T/err" "--out names one page: give one manifest with it" "said why"

# results.jsonl lists the outputs by their path under output_dir.
expect_in "$D/out/results.jsonl" '"outputs":["shoes-bags/s1_1.jpg","shoes-bags/s1_2.jpg"]' "results list subfolder paths"
# An edited row is a changed job: its new outputs replace the old ones as a whole, in their folder.
sed -i 's/^S1,"Boot <b>""Alpine""<\/b>",Shoes & Bags,photos\/s1.jpg,logo.png,2/S1,Boot,Shoes \& Bags,photos\/s1.jpg,logo.png,1/' "$D/cat.csv"
expect_in "$D/cat.csv" "S1,Boot,Shoes & Bags" "the row edited"
run "$SEEDBATCH" run "$D/m.yaml"; expect_rc 1 "the run after the edit"
expect_in "$T/err" "m.yaml: 0 new jobs, 1 changed, 3 unchanged" "one job changed"
expect_eq "$(find "$D/out/shoes-bags" -type f | sed "s|$D/out/||" | sort | tr '\n' ' ')" "shoes-bags/s1_1.jpg " \
    "the earlier second output removed, the first replaced"
expect_eq "$(stat_of requests.submit)" 3 "one more submit: the changed job's alone"
# A folder swapped for a link after validate is not written through: the download fails, nothing lands outside.
mkdir -p "$T/outside"
sed -i 's/^S1,Boot,/S1,Boot two,/' "$D/cat.csv"
rm -rf "$D/out/shoes-bags" && ln -s "$T/outside" "$D/out/shoes-bags"
run "$SEEDBATCH" validate "$D/m.yaml"; expect_rc 2 "validate refuses a linked folder"
expect_in "$T/err" "output_name puts outputs in $D/out/shoes-bags, which exists and is not a folder" "said where"
expect_eq "$(ls "$T/outside" | wc -l)" 0 "nothing written through the link"

# A page of 30 cards: past the first twelve, thumbnails get their source as they come near
# the window (scrolled to the end, all have); without JavaScript each shows once, from <noscript>.
M=$T/many
mkdir -p "$M/p"
for i in $(seq 1 30); do "$GEN_IMAGE" jpeg 48 32 "$M/p/p$i.jpg" "$i"; done
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\n' > "$M/m.yaml"
printf 'limits: {requests_per_second: 50, poll_interval: 200ms}\ndefaults: {max_images: 1}\n' >> "$M/m.yaml"
printf 'jobs:\n  - foreach: "p/*.jpg"\n    id: "{stem}"\n    prompt: "Edit {name}"\n    images: ["{path}"]\n' >> "$M/m.yaml"
run "$SEEDBATCH" run "$M/m.yaml"; expect_rc 0 "30 jobs"
expect_eq "$(grep -o '<img data-src=' "$M/m.out/report.html" | wc -l)" 36 "18 cards' two thumbnails wait for the script"
WAITING="document.querySelectorAll('img[data-src]').length"
SOURCED="[...document.images].filter(i => i.getAttribute('src')).every(i => i.complete)"
"${BROWSER[@]}" "file://$M/m.out/report.html" --size 1280x900 --until "$SOURCED" "$WAITING > 0" \
    "(window.scrollTo(0, document.body.scrollHeight), true)" "wait:$WAITING == 0 && $LOADED" "$SHOWN.length" \
    "$BROKEN" > "$T/many.txt" 2>>"$T/chrome.err"
expect_eq "$(tr '\n' '|' < "$T/many.txt")" 'true|true|true|60|""|' \
    "with JavaScript: cards far below wait; scrolled to the end, all sixty thumbnails load"
"${BROWSER[@]}" "file://$M/m.out/report.html" --nojs --until "$LOADED" "$SHOWN.length" "$BROKEN" "$WAITING" \
    > "$T/many-nojs.txt" 2>>"$T/chrome.err"
expect_eq "$(tr '\n' '|' < "$T/many-nojs.txt")" '60|""|36|' \
    "no JavaScript: sixty thumbnails, each loaded and none twice (the waiting ones hidden)"

finish
