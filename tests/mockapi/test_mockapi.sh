#!/usr/bin/env bash
# The mock API server: both providers' protocols as API.md describes them, the
# counters on /_mock/stats, and every fault mode, each observed from a client.
. "$(dirname "$0")/../lib.sh"

K="Authorization: Bearer test-key"
SEQ=bytedance/seedream-v5.0-lite/edit-sequential
"$GEN_IMAGE" png 40 40 "$T/a.png"
"$GEN_IMAGE" jpeg 40 40 "$T/b.jpg"

req() { # req METHOD PATH [curl args...]: status in $T/code, body in $T/body, curl exit in CURL_RC
    local m=$1 p=$2; shift 2
    curl -s -o "$T/body" -w '%{http_code}' -X "$m" -H "$K" "$@" "$MOCK_URL$p" >"$T/code" 2>/dev/null
    CURL_RC=$?
}
submit() { # submit BODY
    req POST /api/v1/model/generateImage -H 'Content-Type: application/json' -d "$1"
}
pred_id() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("data", d)["id"])' "$T/body"; }
upload_url() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["data"]; print(d.get("download_url") or d.get("url"))' "$T/body"; }

force() { curl -s -o /dev/null -X POST "$MOCK_URL/_mock/predictions/$1/phase/$2"; }

# --- Atlas happy path, both answer shapes, auth (predictions move on only when told) ---
start_mock --latency 600000
grep -q "mockapi listening on http://127.0.0.1:" "$T/mock.log" && pass || fail "mock prints its port"
req POST /api/v1/model/uploadMedia -F "file=@$T/a.png"
expect_eq "$(cat "$T/code")" 200 "upload status"
expect_eq "$(json_get "$T/body" code)" 200 "upload envelope code"
U1=$(upload_url)
curl -s -o "$T/back.png" "$U1"; cmp -s "$T/back.png" "$T/a.png" && pass || fail "uploaded file served back"
req POST /api/v1/model/uploadMedia -F "file=@$T/a.png"
U1b=$(upload_url); expect_eq "$U1b" "$U1" "same content, same URL"
# The three upload answer variants: download_url + file_name, download_url + filename + type, url.
req POST /api/v1/model/uploadMedia -F "file=@$T/b.jpg"
expect_eq "$(json_get "$T/body" data.url | cut -c1-7)" "http://" "upload variant with data.url"
U2=$(upload_url)
expect_eq "$(stat_of uploads)" 3 "uploads counted"
expect_eq "$(stat_of distinct_uploads)" 2 "distinct uploads counted"
# No key, wrong key, wrong path: 401 in Atlas's error shape.
curl -s -o "$T/body" -w '%{http_code}' "$MOCK_URL/api/v1/model/prediction/x" > "$T/code"
expect_eq "$(cat "$T/code")" 401 "no key -> 401"; expect_eq "$(json_get "$T/body" msg)" unauthorized "401 msg"
expect_eq "$(json_get "$T/body" data)" null "401 data null"
curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrong" "$MOCK_URL/api/v1/model/prediction/x" > "$T/code"
expect_eq "$(cat "$T/code")" 401 "wrong key -> 401"
req GET /api/v1/no/such/path; expect_eq "$(cat "$T/code")" 401 "wrong path -> 401"
curl -s -D "$T/hdr" -o /dev/null -H "$K" "$MOCK_URL/api/v1/model/prediction/x"
grep -qi '^X-Request-ID: [0-9a-f]' "$T/hdr" && pass || fail "X-Request-ID header"
expect_eq "$(stat_of unauthorized)" 2 "unauthorized counted"

# Submit: edit-sequential with 2 outputs in PNG; the poll goes starting/processing -> completed.
submit "{\"model\":\"$SEQ\",\"prompt\":\"p1\",\"images\":[\"$U1\",\"$U2\"],\"max_images\":2,\"output_format\":\"png\"}"
expect_eq "$(cat "$T/code")" 200 "submit status"
ID=$(pred_id)
[ ${#ID} -eq 24 ] && pass || fail "prediction id"
expect_eq "$(json_get "$T/body" data.status)" starting "enveloped submit answer"
req GET "/api/v1/model/prediction/$ID"
expect_eq "$(json_get "$T/body" data.status)" starting "poll while queued"
force "$ID" running
req GET "/api/v1/model/prediction/$ID"
expect_eq "$(json_get "$T/body" data.status)" processing "poll while running"
force "$ID" done
req GET "/api/v1/model/prediction/$ID"; cp "$T/body" "$T/done1"
req GET "/api/v1/model/prediction/$ID"; cp "$T/body" "$T/done2"
req GET "/api/v1/model/prediction/$ID"; cp "$T/body" "$T/done3"
SS=$(for f in done1 done2 done3; do json_get "$T/$f" data.status; done | sort -u | tr '\n' ' ')
expect_eq "$SS" "completed succeeded " "completed and succeeded both served"
O1=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["data"]; o=d.get("outputs") or d.get("output"); print(" ".join(o if isinstance(o,list) else [o]))' "$T/done1")
O2=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["data"]; o=d.get("outputs") or d.get("output"); print(" ".join(o if isinstance(o,list) else [o]))' "$T/done2")
expect_eq "$O1" "$O2" "both shapes list the same outputs"
expect_eq "$(echo $O1 | wc -w)" 2 "two outputs"
grep -q '"output"' "$T/done1" "$T/done2" "$T/done3" && pass || fail "output stands in for outputs in one answer"
python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["data"]["metrics"]["predict_time"]; sys.exit(not (isinstance(t,(int,float)) and t >= 0))' "$T/done1" && pass || fail "metrics.predict_time"
n=0; for u in $O1; do n=$((n+1)); curl -s -o "$T/out$n" "$u"; done
file "$T/out1" | grep -q "PNG image data, 64 x 64" && pass || fail "output 1 is a PNG"
curl -s -o "$T/again1" "$(echo $O1 | cut -d' ' -f1)"; cmp -s "$T/out1" "$T/again1" && pass || fail "outputs are stable bytes"
cmp -s "$T/out1" "$T/out2" && fail "two outputs identical" || pass
# Flat answer variant on the next submit; JPEG by default; /edit takes one image string.
submit "{\"model\":\"bytedance/seedream-v5.0-lite/edit\",\"prompt\":\"p2\",\"image\":\"$U1\"}"
expect_eq "$(json_get "$T/body" status)" starting "flat submit answer"
ID2=$(json_get "$T/body" id); force "$ID2" done; req GET "/api/v1/model/prediction/$ID2"
OUT=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["data"]; o=d.get("outputs") or d.get("output"); print(o if isinstance(o,str) else o[0])' "$T/body")
curl -s -o "$T/j" "$OUT"; file "$T/j" | grep -q "JPEG image data" && pass || fail "default output is JPEG"
# Nested {"model","input":{...}} body.
submit "{\"model\":\"$SEQ\",\"input\":{\"prompt\":\"p3\",\"images\":[\"$U1\"]}}"
expect_eq "$(cat "$T/code")" 200 "nested input body accepted"
# Bad requests: unknown model 404, missing prompt 400, not-uploaded image 400, bad JSON 400.
submit "{\"model\":\"nope/model\",\"prompt\":\"x\",\"images\":[\"$U1\"]}"; expect_eq "$(cat "$T/code")" 404 "unknown model"
submit "{\"model\":\"$SEQ\",\"images\":[\"$U1\"]}"; expect_eq "$(cat "$T/code")" 400 "missing prompt"
submit "{\"model\":\"$SEQ\",\"prompt\":\"x\",\"images\":[\"$MOCK_URL/files/0000\"]}"; expect_eq "$(cat "$T/code")" 400 "image never uploaded"
submit "{\"model\":" ; expect_eq "$(cat "$T/code")" 400 "bad JSON"
req GET /api/v1/model/prediction/doesnotexist; expect_eq "$(cat "$T/code")" 404 "unknown prediction"
# Duplicates: the same body twice.
submit "{\"model\":\"$SEQ\",\"prompt\":\"p1\",\"images\":[\"$U1\",\"$U2\"],\"max_images\":2,\"output_format\":\"png\"}"
expect_eq "$(stat_of submissions)" 4 "accepted submissions"
expect_eq "$(stat_of duplicate_submissions)" 1 "duplicate submission counted"
expect_eq "$(stat_of downloads_with_auth)" 0 "downloads carried no key"
curl -s -o /dev/null -H "$K" "$(echo $O1 | cut -d' ' -f1)"
expect_eq "$(stat_of downloads_with_auth)" 1 "a download with a key is counted"
stop_mock

# --- RunComfy: submit, status, result, cancel (phases moved on by the control endpoint) ---
start_mock --latency 600000
RC=bytedance/seedream-5/lite/edit
req POST "/v1/models/$RC" -d '{"prompt":"q","image":["https://x.example/a.png"]}'
expect_eq "$(cat "$T/code")" 400 "rc submit without Content-Type: application/json is refused"
req POST /api/v1/model/generateImage -d '{"model":"m","prompt":"q"}'
expect_eq "$(cat "$T/code")" 400 "atlas submit without Content-Type: application/json is refused"
expect_eq "$(stat_of submissions)" 0 "refused submits create nothing"
req POST "/v1/models/$RC" -H "Content-Type: application/json" -d '{"prompt":"q","image":["https://x.example/a.png"],"sequential_image_generation":"auto","max_images":3}'
expect_eq "$(cat "$T/code")" 200 "rc submit"
RID=$(json_get "$T/body" request_id)
expect_eq "$(json_get "$T/body" status_url)" "$MOCK_URL/v1/requests/$RID/status" "rc status_url"
req GET "/v1/requests/$RID/status"; expect_eq "$(json_get "$T/body" status)" in_queue "rc in_queue"
expect_eq "$(json_get "$T/body" queue_position)" 1 "rc queue_position"
req GET "/v1/requests/$RID/result"; expect_eq "$(json_get "$T/body" status)" in_queue "rc result while queued"
force "$RID" running
req GET "/v1/requests/$RID/status"; expect_eq "$(json_get "$T/body" status)" in_progress "rc in_progress"
req POST "/v1/requests/$RID/cancel"; expect_eq "$(cat "$T/code")" 202 "rc cancel 202"
expect_eq "$(json_get "$T/body" outcome)" not_cancellable "rc running is not cancellable"
force "$RID" done
req GET "/v1/requests/$RID/status"; expect_eq "$(json_get "$T/body" status)" completed "rc completed"
req GET "/v1/requests/$RID/result"; expect_eq "$(json_get "$T/body" status)" succeeded "rc succeeded"
expect_eq "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["output"]["images"]))' "$T/body")" 3 "rc three images"
req POST "/v1/models/$RC" -H "Content-Type: application/json" -d '{"prompt":"q2","image":["https://x.example/a.png"]}'
RID2=$(json_get "$T/body" request_id)
req POST "/v1/requests/$RID2/cancel"; expect_eq "$(json_get "$T/body" outcome)" cancelled "rc queued is cancelled"
req GET "/v1/requests/$RID2/status"; expect_eq "$(json_get "$T/body" status)" cancelled "rc status cancelled"
expect_eq "$(stat_of cancelled)" 1 "cancel counted"
req POST "/v1/models/not/a/model" -H "Content-Type: application/json" -d '{"prompt":"q"}'; expect_eq "$(json_get "$T/body" error_code)" 400001 "rc bad model id"
req GET "/v1/requests/nope/status"; expect_eq "$(json_get "$T/body" error_code)" 404001 "rc unknown request"
curl -s -o "$T/body" "$MOCK_URL/v1/requests/$RID/status"; expect_eq "$(json_get "$T/body" error_code)" 400004 "rc no token"
stop_mock

# --- fault injection, each observable ---
start_mock --fault submit:503:#1 --fault poll:429:#1 --fault poll:429ra:#1 --retry-after 7 \
           --fault upload:drop:#1 --fault upload:garbage:#1 --fault submit:lost:#1 --fault submit:truncate:#1 \
           --fault poll:slow:#1 --slow-ms 600 --fault poll:garbage:#1 --fault poll:500:#1 --fault poll:502:#1 \
           --fault poll:504:#1 --fault poll:402:#1 --fault poll:403:#1
req POST /api/v1/model/uploadMedia -F "file=@$T/a.png"; expect_eq "$CURL_RC" 52 "dropped connection (empty reply)"
req POST /api/v1/model/uploadMedia -F "file=@$T/a.png"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/body" 2>/dev/null && fail "garbage JSON parsed" || pass
req POST /api/v1/model/uploadMedia -F "file=@$T/a.png"; U=$(upload_url)
B="{\"model\":\"$SEQ\",\"prompt\":\"f\",\"images\":[\"$U\"]}"
submit "$B"; expect_eq "$(cat "$T/code")" 503 "503 injected"; expect_eq "$(json_get "$T/body" code)" 503 "503 Atlas shape"
submit "$B"; expect_eq "$CURL_RC" 52 "lost answer"; expect_eq "$(stat_of predictions)" 1 "lost submit still created the prediction"
submit "$B"; expect_eq "$CURL_RC" 18 "truncated body (curl: partial file)"
expect_eq "$(stat_of duplicate_submissions)" 1 "retry after a lost answer is a duplicate"
submit "$B"; ID=$(pred_id)
# The first poll is both slow and refused: a slow fault delays whatever answer follows.
S=$(date +%s%N); req GET "/api/v1/model/prediction/$ID" -D "$T/h1"; E=$(( ($(date +%s%N) - S) / 1000000 ))
[ "$E" -ge 550 ] && pass || fail "slow answer took ${E}ms"
expect_eq "$(cat "$T/code")" 429 "429 injected"
curl -s -D "$T/h0" -o /dev/null -H "$K" "$MOCK_URL/api/v1/model/prediction/$ID" # 429ra
grep -qi '^Retry-After: 7' "$T/h0" && pass || fail "429 with Retry-After"
grep -qi '^HTTP/1.1 429' "$T/h0" && pass || fail "429ra status"
grep -qi '^HTTP/1.1 429' "$T/h1" && pass || fail "headers of the plain 429 captured"
grep -qi '^Retry-After' "$T/h1" && fail "plain 429 has Retry-After" || pass
req GET "/api/v1/model/prediction/$ID"; expect_eq "$(head -c 6 "$T/body")" "<html>" "poll garbage"
for s in 500 502 504 402 403; do req GET "/api/v1/model/prediction/$ID"; expect_eq "$(cat "$T/code")" "$s" "$s injected"; done
expect_eq "$(json_get "$T/body" code)" 403 "403 in Atlas shape"
req GET "/api/v1/model/prediction/$ID"; expect_eq "$(cat "$T/code")" 200 "faults used up"
expect_eq "$(stat_of faults.503)" 1 "503 counted"; expect_eq "$(stat_of faults.drop)" 1 "drop counted"
expect_eq "$(stat_of faults.slow)" 1 "slow counted"; expect_eq "$(stat_of faults.lost)" 1 "lost counted"
stop_mock

# Failed predictions (HTTP 200, status failed, error_code 1039), early 404, outputs N, expiry.
# (The 404 window is 3 s, looked at right after the submit: room for a loaded machine.)
start_mock --latency 0 --early-404 3000 --outputs 3 --expire-after 5000
req POST /api/v1/model/uploadMedia -F "file=@$T/a.png"; U=$(upload_url)
submit "{\"model\":\"$SEQ\",\"prompt\":\"please mock:fail\",\"images\":[\"$U\"]}"; IDF=$(pred_id)
submit "{\"model\":\"$SEQ\",\"prompt\":\"fine\",\"images\":[\"$U\"]}"; IDS=$(pred_id)
req GET "/api/v1/model/prediction/$IDS"; expect_eq "$(cat "$T/code")" 404 "404 shortly after submit"
submit "{\"model\":\"$SEQ\",\"prompt\":\"gone mock:expire\",\"images\":[\"$U\"]}"; IDE=$(pred_id)
sleep 3.1
force "$IDS" done # restarts its expiry clock: 5 s from now (room for a loaded machine)
req GET "/api/v1/model/prediction/$IDF"; expect_eq "$(cat "$T/code")" 200 "failed prediction is HTTP 200"
expect_eq "$(json_get "$T/body" data.status)" failed "failed status"
expect_eq "$(json_get "$T/body" data.error_code)" 1039 "moderation error_code"
req GET "/api/v1/model/prediction/$IDS"
URLS=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["data"]; o=d.get("outputs") or d.get("output"); print(" ".join(o if isinstance(o,list) else [o]))' "$T/body")
expect_eq "$(echo $URLS | wc -w)" 3 "--outputs 3"
curl -s -o /dev/null -w '%{http_code}' "$(echo $URLS | cut -d' ' -f1)" > "$T/code"; expect_eq "$(cat "$T/code")" 200 "fresh output downloads"
req GET "/api/v1/model/prediction/$IDE"
U3=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["data"]; o=d.get("outputs") or d.get("output"); print(o if isinstance(o,str) else o[0])' "$T/body")
curl -s -o /dev/null -w '%{http_code}' "$U3" > "$T/code"; expect_eq "$(cat "$T/code")" 404 "mock:expire output is 404"
sleep 5.1
curl -s -o /dev/null -w '%{http_code}' "$(echo $URLS | cut -d' ' -f1)" > "$T/code"; expect_eq "$(cat "$T/code")" 404 "expired output is 404"
expect_eq "$(stat_of expired_downloads)" 2 "expired downloads counted"
stop_mock

# Server-side rate limit without and with Retry-After; peak requests in 1 s.
start_mock --rate-limit 5 --retry-after 0
args=(); for i in $(seq 1 12); do args+=(-o /dev/null "$MOCK_URL/api/v1/model/prediction/x$i"); done
curl -s -w '%{http_code}\n' -H "$K" "${args[@]}" > "$T/codes" # one process, one connection: well within 1 s
expect_eq "$(grep -c 429 "$T/codes")" 7 "7 of 12 refused at 5 req/s"
expect_eq "$(stat_of refused_rate)" 7 "refusals counted"
expect_eq "$(stat_of peak_requests_1s)" 12 "peak requests in 1 s"
curl -s -D "$T/h2" -o /dev/null -H "$K" "$MOCK_URL/api/v1/model/prediction/x"
grep -qi '^Retry-After' "$T/h2" && fail "Retry-After sent when not asked" || pass
stop_mock
start_mock --rate-limit 1 --retry-after 3
curl -s -o /dev/null -H "$K" "$MOCK_URL/api/v1/model/prediction/x"
curl -s -D "$T/h3" -o /dev/null -H "$K" "$MOCK_URL/api/v1/model/prediction/x"
grep -qi '^Retry-After: 3' "$T/h3" && pass || fail "rate limit with Retry-After"
stop_mock
# RunComfy's HTTP 200 carrying an error, and balance (402 -> 400002).
start_mock --fault rc_status:err200:#1 --fault rc_submit:402:#1
req POST "/v1/models/$RC" -H "Content-Type: application/json" -d '{"prompt":"q","image":["https://x.example/a.png"]}'
expect_eq "$(cat "$T/code")" 402 "rc balance status"; expect_eq "$(json_get "$T/body" error_code)" 400002 "rc balance code"
req POST "/v1/models/$RC" -H "Content-Type: application/json" -d '{"prompt":"q","image":["https://x.example/a.png"]}'; RID=$(json_get "$T/body" request_id)
req GET "/v1/requests/$RID/status"; expect_eq "$(cat "$T/code")" 200 "err200 is HTTP 200"
expect_eq "$(json_get "$T/body" error_code)" 400004 "err200 carries error_code"
stop_mock
"$MOCKAPI" --fault nowhere:503:1 >/dev/null 2>&1; expect_eq "$?" 2 "bad --fault refused"

# --- the dialects of the providers' own clients, each selectable: a feature named alone is in every answer ---
dialect() { # dialect FEATURES [prompt]: starts the mock with them, submits to both providers (ids in AID, RID)
    stop_mock; start_mock --latency 600000 --dialect "$1"
    submit "{\"model\":\"$SEQ\",\"prompt\":\"${2:-d}\",\"images\":[\"https://x.example/a.png\"],\"max_images\":2}"; AID=$(pred_id)
    req POST "/v1/models/$RC" -H "Content-Type: application/json" -d "{\"prompt\":\"${2:-d}\",\"image\":[\"https://x.example/a.png\"]}"
    RID=$(json_get "$T/body" request_id)
}
apoll() { req GET "/api/v1/model/prediction/$AID"; }
rstatus() { req GET "/v1/requests/$RID/status"; }
rresult() { req GET "/v1/requests/$RID/result"; }
dialect case; apoll; expect_eq "$(json_get "$T/body" data.status)" STARTING "case: upper-case Atlas words"
rstatus; expect_eq "$(json_get "$T/body" status)" IN_QUEUE "case: upper-case RunComfy words"
dialect words; apoll; w=$(json_get "$T/body" data.status)
case "$w" in created|queued) pass ;; *) fail "words: queued as $w" ;; esac
force "$AID" done; apoll; w=$(json_get "$T/body" data.status)
case "$w" in succeeded|success) pass ;; *) fail "words: done as $w" ;; esac
dialect words "x mock:fail"; force "$AID" done; apoll; expect_eq "$(json_get "$T/body" data.status)" error "words: failed as error"
dialect unknown; apoll; expect_eq "$(json_get "$T/body" data.status)" warming_up "unknown: Atlas"
rstatus; expect_eq "$(json_get "$T/body" status)" preparing "unknown: RunComfy"
dialect verdict "x mock:fail"; force "$AID" done; apoll
expect_eq "$(cat "$T/code")/$(json_get "$T/body" code)/$(json_get "$T/body" data.status)" 500/500/failed "verdict: a 500 naming failed"
dialect errobj "x mock:fail"; force "$AID" done; apoll
expect_eq "$(json_get "$T/body" data.error.code)" 1039 "errobj: error as an object"
stop_mock; start_mock --latency 600000
submit "{\"model\":\"$SEQ\",\"prompt\":\"x mock:timeout\",\"images\":[\"https://x.example/a.png\"]}"; AID=$(pred_id)
force "$AID" done; apoll; expect_eq "$(json_get "$T/body" data.status)" timeout "mock:timeout: the status timeout"
dialect nonurl; force "$AID" done; apoll
expect_eq "$(python3 -c 'import json,sys; o=json.load(open(sys.argv[1]))["data"]; print([u if u is None or u == "" else "url" for u in (o.get("outputs") or o.get("output"))])' "$T/body")" \
    "['url', 'url', '', None]" "nonurl: entries that are no URL after the URLs"
dialect nsfw; force "$AID" done; apoll
expect_eq "$(json_get "$T/body" data.has_nsfw_contents)" "[true, false]" "nsfw: the first output flagged"
stop_mock; start_mock --latency 600000
submit "{\"model\":\"$SEQ\",\"prompt\":\"y mock:nsfw\",\"images\":[\"https://x.example/a.png\"],\"max_images\":2}"; AID=$(pred_id)
force "$AID" done; apoll
expect_eq "$(json_get "$T/body" data.outputs)/$(json_get "$T/body" data.has_nsfw_contents)" "[]/[true, true]" "mock:nsfw: every output withheld"
dialect notready; rresult
expect_eq "$(cat "$T/code")/$(json_get "$T/body" error_code)" 400/400005 "notready: the result before the end"
force "$RID" done; rresult; expect_eq "$(json_get "$T/body" status)" succeeded "notready: then the result"
dialect completed; force "$RID" done; rstatus; expect_eq "$(json_get "$T/body" status)" completed "completed: the status call"
rresult; expect_eq "$(json_get "$T/body" status)/$(json_get "$T/body" output | grep -o '"http://' | head -1)" 'completed/"http://' \
    "completed: the result call, with its output"
dialect stuck; force "$RID" done; rresult
expect_eq "$(json_get "$T/body" status)/$(json_get "$T/body" output)" "completed/{}" "stuck: completed without output"
force "$AID" done; apoll; expect_eq "$(json_get "$T/body" data.status)/$(json_get "$T/body" data.outputs)" "completed/[]" "stuck: Atlas too"
dialect detail
req POST "/v1/models/$RC" -H "Content-Type: application/json" -d '{"prompt":"q"}'
expect_eq "$(cat "$T/code")/$(json_get "$T/body" detail.0.loc.1)/$(json_get "$T/body" detail.0.type)" 422/image/value_error \
    "detail: a validation error as 422 with a detail array"
stop_mock
"$MOCKAPI" --dialect nonsense >/dev/null 2>&1; expect_eq "$?" 2 "bad --dialect refused"

finish
