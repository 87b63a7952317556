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

# The page in Chromium: a copy beside it with a check appended, run once the images load.
cat > "$T/check.js" <<'EOF'
<script>
window.addEventListener('load', function () {
  var tries = 0;
  (function wait() {
    var local = [].slice.call(document.querySelectorAll('img')).filter(function (i) {
      return !/^https?:/.test(i.getAttribute('src')); });
    var pending = local.filter(function (i) { return !i.complete; });
    if (pending.length && tries++ < 50) { setTimeout(wait, 100); return; }
    var bad = local.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
    var b = document.body;
    b.setAttribute('data-local-images', local.length);
    b.setAttribute('data-broken', bad.map(function (i) { return i.getAttribute('src'); }).join(' '));
    b.setAttribute('data-controls-hidden', document.getElementById('controls').hidden);
    b.setAttribute('data-shown-before', document.getElementById('shown').textContent);
    var box = document.querySelector('#controls input[value=failed]');
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
EOF
sed '/<\/body>/e cat '"$T/check.js" "$R" > "$D/out/check.html"
CHROME=(chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,4000
        --virtual-time-budget=8000)
"${CHROME[@]}" --dump-dom "file://$D/out/check.html" > "$T/dom.html" 2>"$T/chrome.err"
attr() { /usr/bin/python3 - "$T/dom.html" "$1" <<'PY'
import re, sys
m = re.search(r'<body[^>]*\s%s="([^"]*)"' % re.escape(sys.argv[2]), open(sys.argv[1]).read())
print(m.group(1) if m else "(none)")
PY
}
expect_eq "$(attr data-local-images)" 9 "nine local thumbnails (six references, three outputs)"
expect_eq "$(attr data-broken)" "" "every local thumbnail loads in Chromium"
expect_eq "$(attr data-controls-hidden)" false "filters shown with JavaScript"
expect_eq "$(attr data-shown-before)" "4 of 4 shown" "all shown at first"
expect_eq "$(attr data-hidden-failed)" 1 "the failed filter hides the failed card"
expect_eq "$(attr data-shown-search)" "1 of 4 shown" "the search finds one card"

# Without JavaScript (a copy whose policy refuses its script: headless Chromium's own switch
# leaves nothing to dump) every card shows and the filters stay hidden.
sed "s|<head>|<head><meta http-equiv=\"Content-Security-Policy\" content=\"script-src 'none'\">|" "$R" \
    > "$D/out/nojs.html"
"${CHROME[@]}" --dump-dom "file://$D/out/nojs.html" > "$T/dom-nojs.html" 2>>"$T/chrome.err"
/usr/bin/python3 - "$T/dom-nojs.html" "$D/out" > "$T/nojs.txt" <<'PY'
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
expect_eq "$(cat "$T/nojs.txt")" "4 0 True 20 missing: " "no JavaScript: 4 cards, none hidden, 20 links, each a file"

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
finish
