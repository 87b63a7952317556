#!/usr/bin/env bash
# The review page, where a person sees it: a mixed batch from a catalogue (succeeded,
# failed, cancelled, several outputs, subfolders, a remote reference, a prompt holding
# markup) run against the mock, its report.html opened in headless Chromium with and
# without JavaScript: the cards and their statuses, every thumbnail and link a file the
# browser loads, the filters, and a screenshot that is not blank.
. "$(dirname "$0")/../lib.sh"
command -v chromium >/dev/null && /usr/bin/python3 -c 'import PIL' 2>/dev/null ||
    bash "$SOURCE_DIR/scripts/apt-install.sh" chromium python3-pil >/dev/null
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

# The page in Chromium: a copy beside it with a check appended, run once the images shown
# have loaded (past the first cards they get their source from the page's script as
# they come near the window).
cat > "$T/check.js" <<'JS'
<script>
window.addEventListener('load', function () {
  var tries = 0;
  (function wait() {
    var shown = [].slice.call(document.querySelectorAll('img')).filter(function (i) {
      return getComputedStyle(i).display != 'none'; });
    var local = shown.filter(function (i) { return !/^https?:/.test(i.getAttribute('src') || ''); });
    var pending = local.filter(function (i) { return !i.getAttribute('src') || !i.complete; });
    if (pending.length && tries++ < 80) { setTimeout(wait, 100); return; }
    var bad = local.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
    var b = document.body, controls = document.getElementById('controls');
    b.setAttribute('data-local-images', local.length);
    b.setAttribute('data-broken', bad.map(function (i) { return i.getAttribute('src') || 'no-src'; }).join(' '));
    b.setAttribute('data-controls-hidden', controls.hidden);
    if (controls.hidden) return;
    b.setAttribute('data-shown-before', document.getElementById('shown').textContent);
    var box = document.querySelector('#controls input[value=failed]');
    if (!box) return;
    box.checked = false;
    box.dispatchEvent(new Event('input', {bubbles: true}));
    var q = document.getElementById('q');
    b.setAttribute('data-hidden-failed', document.querySelectorAll('[data-job][hidden]').length);
    q.value = 'ALPINE';
    q.dispatchEvent(new Event('input', {bubbles: true}));
    b.setAttribute('data-shown-search', document.getElementById('shown').textContent);
  })();
});
</script>
JS
CHROME=(chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,4000
        --virtual-time-budget=10000)
# browser_check PAGE DOM [nojs]: PAGE's DOM in Chromium, with the check, into DOM. With nojs, as a
# browser without JavaScript reads it: the page's scripts left out and what <noscript> holds
# read as markup (headless Chromium cannot turn scripts off and still dump or draw a page).
browser_check() {
    /usr/bin/python3 - "$1" "$T/check.js" "${3:-}" > "$(dirname "$1")/check.html" <<'PY'
import re, sys
page, check, nojs = open(sys.argv[1]).read(), open(sys.argv[2]).read(), sys.argv[3]
if nojs:
    page = re.sub(r"<script>.*?</script>", "", page, flags=re.S)
    page = re.sub(r"</?noscript>", "", page)
print(page.replace("</body>", check + "</body>"), end="")
PY
    "${CHROME[@]}" --dump-dom "file://$(dirname "$1")/check.html" > "$2" 2>>"$T/chrome.err"
}
attr() { # attr DOM NAME: an attribute the check set on the body
    /usr/bin/python3 - "$1" "$2" <<'PY'
import re, sys
m = re.search(r'<body[^>]*\s%s="([^"]*)"' % re.escape(sys.argv[2]), open(sys.argv[1]).read())
print(m.group(1) if m else "(none)")
PY
}
# cards DOM DIR: cards, hidden cards, filters hidden, links, and the links to no file under DIR.
cards() {
    /usr/bin/python3 - "$1" "$2" <<'PY'
import html.parser, os, sys, urllib.parse
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
p.feed(open(sys.argv[1]).read())
missing = [l for l in p.links if not l.startswith("http")
           and not os.path.isfile(os.path.join(sys.argv[2], urllib.parse.unquote(l)))]
print(p.cards, p.hidden, p.controls_hidden, len(p.links), "missing:", " ".join(missing))
PY
}
browser_check "$R" "$T/dom.html"
expect_eq "$(attr "$T/dom.html" data-local-images)" 9 "nine local thumbnails (six references, three outputs)"
expect_eq "$(attr "$T/dom.html" data-broken)" "" "every local thumbnail loads in Chromium"
expect_eq "$(attr "$T/dom.html" data-controls-hidden)" false "filters shown with JavaScript"
expect_eq "$(attr "$T/dom.html" data-shown-before)" "4 of 4 shown" "all shown at first"
expect_eq "$(attr "$T/dom.html" data-hidden-failed)" 1 "the failed filter hides the failed card"
expect_eq "$(attr "$T/dom.html" data-shown-search)" "1 of 4 shown" "the search finds one card"
browser_check "$R" "$T/dom-nojs.html" nojs
expect_eq "$(cards "$T/dom-nojs.html" "$D/out")" "4 0 True 20 missing: " \
    "no JavaScript: 4 cards, none hidden, filters hidden, 20 links, each a file"
expect_eq "$(attr "$T/dom-nojs.html" data-broken)" "" "no JavaScript: every thumbnail loads"

# A screenshot that is not blank: the page's colours, and the thumbnails' many more.
"${CHROME[@]/--window-size=1280,4000/--window-size=1280,900}" --screenshot="$T/shot.png" "file://$R" \
    >/dev/null 2>>"$T/chrome.err"
colours=$(/usr/bin/python3 -c 'import sys; from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB"); print(im.size[0], im.size[1], len(set(im.getdata())) > 500)' "$T/shot.png")
expect_eq "$colours" "1280 900 True" "the screenshot shows the page and its images"

# seedbatch report rewrites it from the state; --out elsewhere links relative to there.
rm "$R"
run "$SEEDBATCH" report "$D/m.yaml"; expect_rc 0 "report"
expect_in "$T/out" "$D/out/report.html written (4 jobs)" "report says where"
expect_eq "$(grep -c 'data-job=' "$R")" 4 "rewritten with its cards"
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
# the window; every one loads with JavaScript and, from <noscript>, without, none twice.
M=$T/many
mkdir -p "$M/p"
for i in $(seq 1 30); do "$GEN_IMAGE" jpeg 48 32 "$M/p/p$i.jpg" "$i"; done
printf 'version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\n' > "$M/m.yaml"
printf 'limits: {requests_per_second: 50, poll_interval: 200ms}\ndefaults: {max_images: 1}\n' >> "$M/m.yaml"
printf 'jobs:\n  - foreach: "p/*.jpg"\n    id: "{stem}"\n    prompt: "Edit {name}"\n    images: ["{path}"]\n' >> "$M/m.yaml"
run "$SEEDBATCH" run "$M/m.yaml"; expect_rc 0 "30 jobs"
expect_eq "$(grep -o '<img data-src=' "$M/m.out/report.html" | wc -l)" 36 "18 cards' two thumbnails wait for the script"
browser_check "$M/m.out/report.html" "$T/many.html"
expect_eq "$(attr "$T/many.html" data-local-images)" 60 "sixty thumbnails"
expect_eq "$(attr "$T/many.html" data-broken)" "" "each loads as its card comes near"
browser_check "$M/m.out/report.html" "$T/many-nojs.html" nojs
expect_eq "$(attr "$T/many-nojs.html" data-local-images)" 60 "no JavaScript: sixty thumbnails, none twice"
expect_eq "$(attr "$T/many-nojs.html" data-broken)" "" "no JavaScript: each loads"

finish
