#!/usr/bin/env bash
# test_codes.sh - every documented code produced by a real request against the real daemons:
# the API error codes not covered elsewhere (queue_unavailable and /healthz naming the daemon
# that is down, insufficient_storage before the body, missing_field, field_too_long, not_done
# for a task in progress, 431), each task error.code from real input or a real failure
# (worker_crashed, bad_request_file, io_error, limits_exceeded x3, unsupported_stream,
# verify_failed, encode_error), the Location / ETag / Accept-Ranges / Content-Disposition /
# Content-Type headers, the order and paging of GET /v1/tasks, and free_workers in /v1/status.
# Every answer is checked status first, then its JSON body.
. "$(dirname "$0")/lib.sh"

TYPE=convert_video_to_libx265
ALL_IDS=() # every task a 201 made, in the order they were made

# conf [convert keys...]: the test's config; two workers so free_workers differs from both 0 and
# max_workers while one task converts, two attempts for worker_crashed, small headers for 431.
conf() {
    write_conf "workers = 2" "max_attempts = 2" "$@" "[rest]" "max_header_bytes = 4096"
}
conf
tm_start_all

# --- helpers -------------------------------------------------------------------------------

# no_tmp_dirs: no upload left half-way in data/request (the cleanup runs just before the answer,
# but give it up to 2 s).
no_tmp_dirs() {
    wait_for 2 test -z "$(find "$ROOT/data/request" -mindepth 1 -maxdepth 1 -name '.tmp-*')"
}

# health_is STATUS JQ: /healthz answers STATUS with a JSON body for which JQ is true.
health_is() {
    : >"$W/hdr"
    api GET /healthz -D "$W/hdr" >"$W/health" 2>/dev/null
    [ "$STATUS" = "$1" ] && jq -e "$2" "$W/health" >/dev/null 2>&1 &&
        grep -qi '^content-type: application/json' "$W/hdr"
}

# check_health DESCRIPTION STATUS JQ: waits up to 10 s (the queue hears of a daemon coming or
# going asynchronously).
check_health() {
    if wait_for 10 health_is "$2" "$3"; then
        ok "$1 -> $STATUS $(jq -c .daemons "$W/health")"
    else
        fail "$1: want $2 with $3, got $STATUS $(tr -d ' \n' <"$W/health")"
    fi
}
ALL_UP='.status == "ok" and .daemons == {"rest":true,"queue":true,"convert":true,"callback":true}'

# status_is JQ: GET /v1/status answers 200 with a body for which JQ is true.
status_is() {
    api GET /v1/status >"$W/status" 2>/dev/null
    [ "$STATUS" = 200 ] && jq -e "$1" "$W/status" >/dev/null 2>&1
}

# new_task OUT [curl args...]: POST /v1/tasks; OUT.hdr, OUT.body; prints the status.
new_task() {
    local out=$1
    shift
    curl -s -S -D "$out.hdr" -o "$out.body" -w '%{http_code}' -F "task_type=$TYPE" "$@" \
        "$URL/v1/tasks" || true
}

# add ID: remembers a task the test made (for the listing checks at the end).
add() {
    [ -n "$1" ] && [ "$1" != null ] && ALL_IDS+=("$1")
}

# finished ID: the task is done or failed (a task that should fail but is done stops the wait).
finished() {
    grep -qxE 'done|failed' <<<"$(curl -s "$URL/v1/tasks/$1" | jq -r .state)"
}

# task_failed_with ID CODE MESSAGE-REGEX [LABEL]: the task ends failed, its task object says
# CODE with a message matching MESSAGE-REGEX, it has no result, and its job folder holds no
# output file.
task_failed_with() {
    local id=$1 code=$2 re=$3 l=${4:-$2} got
    if ! wait_for 60 finished "$id"; then
        fail "$l: task $id did not finish in 60 s"
        return
    fi
    api GET "/v1/tasks/$id" >"$W/task"
    check "$l: GET the failed task is 200" test "$STATUS" = 200
    got=$(jq -r '.state + " " + (.error.code // "(no error)")' "$W/task")
    check "$l: state and error.code are '$got'" test "$got" = "failed $code"
    check "$l: message '$(jq -r .error.message "$W/task")' matches /$re/" \
        grep -qE -- "$re" <<<"$(jq -r '.error.message // empty' "$W/task")"
    check "$l: no result" test "$(jq -c .result "$W/task")" = null
    check "$l: no output file left in failed/$id" \
        test -d "$ROOT/data/failed/$id" -a -z "$(find "$ROOT/data/failed/$id" -name 'output*')"
}

# --- fixtures --------------------------------------------------------------------------------
make_mp4 "$FIX/clip.mp4" 1
make_mp4 "$FIX/slow.mp4" 20 1280x720 # x265 at preset medium takes a while on it
make_mp4 "$FIX/wide.mp4" 2 640x360   # its HEVC output is far over 20000 bytes
lavfi() { # FILE SECONDS SIZE [ffmpeg args...]: a video-only clip
    local f=$1 t=$2 s=$3
    shift 3
    ffmpeg -v error -y -f lavfi -i "testsrc2=size=$s:rate=25" -t "$t" -c:v libx264 \
        -preset ultrafast -pix_fmt yuv420p "$@" "$f"
}
lavfi "$FIX/tall.mkv" 1 320x240                # over max_height = 200
lavfi "$FIX/long.mkv" 4 160x120                # over max_duration = 3
ffmpeg -v error -y -f lavfi -i testsrc2=size=160x120:rate=25 -f lavfi -i sine=sample_rate=48000 \
    -f lavfi -i sine=frequency=660:sample_rate=48000 -map 0 -map 1 -map 2 -t 1 -c:v libx264 \
    -preset ultrafast -pix_fmt yuv420p -c:a aac "$FIX/streams.mkv" # 3 streams > max_streams = 2
# A Matroska file with a font attachment: mp4 cannot hold an attachment, and an attachment is
# neither audio nor a text subtitle that could be converted (convert_plan.c choose_kind).
printf 'not really a font: attachment bytes\n' >"$FIX/font.ttf"
lavfi "$FIX/font.mkv" 1 160x120 -attach "$FIX/font.ttf" \
    -metadata:s:t mimetype=application/x-truetype-font
# A Matroska file whose Segment Info Duration (ID 44 89, size 0x88, a big-endian double in ms)
# claims 2.4 s for 2 s of frames. Within check_input_end's 2 % + 0.5 s (so not decode_error) but
# outside verify's 1 % / 0.1 s: the output lasts 2 s (convert_verify.c compare_files). A 10x
# claim would be decode_error ("input ends after 2.0 s although it declares 20.0 s").
lavfi "$FIX/liar.mkv" 2 160x120
python3 - "$FIX/liar.mkv" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], 'rb').read())
i = b.find(b'\x44\x89\x88')
assert i >= 0 and b.find(b'\x44\x89\x88', i + 1) < 0, 'want exactly one Duration element'
ms = struct.unpack('>d', b[i + 3:i + 11])[0]
assert abs(ms - 2000) < 50, ms
b[i + 3:i + 11] = struct.pack('>d', ms * 1.2)
open(sys.argv[1], 'wb').write(b)
PY
check "the liar fixture claims 2.4 s" \
    test "$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$FIX/liar.mkv")" = 2.400000
# A 2x2 picture: FFmpeg decodes it, libx265 refuses to open for it ("Image size is too small").
ffmpeg -v error -y -f lavfi -i color=c=red:size=2x2:rate=25 -t 1 -c:v ffv1 "$FIX/tiny.mkv"

# ====== 3. headers =============================================================================
# 201 and the 200 of a repeated idempotency key carry Location.
s=$(new_task "$W/k1" -H 'Idempotency-Key: codes-key-1' --form-string 'file_name=vidéo.mkv' \
    -F "file_data=@$FIX/tall.mkv")
kid=$(jq -r .id "$W/k1.body" 2>/dev/null || true)
add "$kid"
check "POST with a key is 201 ($s)" test "$s" = 201
check "201 Location is /v1/tasks/$kid" test "$(hdr_value "$W/k1.hdr" location)" = "/v1/tasks/$kid"
s=$(new_task "$W/k2" -H 'Idempotency-Key: codes-key-1' --form-string 'file_name=vidéo.mkv' \
    -F "file_data=@$FIX/tall.mkv")
check "the repeated key is 200 ($s)" test "$s" = 200
check "the 200 names the same task" test "$(jq -r .id "$W/k2.body")" = "$kid"
check "200 Location is /v1/tasks/$kid" test "$(hdr_value "$W/k2.hdr" location)" = "/v1/tasks/$kid"
s=$(new_task "$W/m1" -F "file_data=@$FIX/clip.mp4")
mid=$(jq -r .id "$W/m1.body" 2>/dev/null || true)
add "$mid"
check "a POST without a key is 201 with Location" \
    test "$s:$(hdr_value "$W/m1.hdr" location)" = "201:/v1/tasks/$mid"

# The result download: ETag, Accept-Ranges, Content-Disposition, Content-Type.
# result_headers ID WANT-TYPE: downloads the result and checks its headers.
result_headers() {
    local id=$1 type=$2 sha
    wait_state "$id" done 60 || { fail "task $id is not done"; return; }
    sha=$(curl -s "$URL/v1/tasks/$id" | jq -r .result.sha256)
    curl -s -S -D "$W/rh" -o "$W/result" -w '%{http_code}' "$URL/v1/tasks/$id/result" >"$W/rs" || true
    check "result of $id is 200" test "$(cat "$W/rs")" = 200
    check "ETag is the quoted result.sha256" test "$(hdr_value "$W/rh" etag)" = "\"$sha\""
    check "ETag is the sha256 of the bytes" test "$(sha256sum "$W/result" | cut -d' ' -f1)" = "$sha"
    check "Accept-Ranges: bytes" test "$(hdr_value "$W/rh" accept-ranges)" = bytes
    check "Content-Type: $type" test "$(hdr_value "$W/rh" content-type)" = "$type"
}
result_headers "$kid" video/x-matroska
cd_value=$(hdr_value "$W/rh" content-disposition)
# filename*=UTF-8''<percent-encoded> (RFC 5987: attr-chars and %XX only) decodes to the name.
check "Content-Disposition's filename* decodes to vidéo.mkv ($cd_value)" python3 -c '
import re, sys, urllib.parse
m = re.search(r"filename\*=UTF-8\x27\x27([^;]*)", sys.argv[1])
v = m.group(1) if m else ""
ok = re.fullmatch(r"(?:[A-Za-z0-9!#$&+.^_`|~-]|%[0-9A-Fa-f]{2})+", v or "-") is not None
sys.exit(not (ok and urllib.parse.unquote(v, errors="strict") == "vidéo.mkv"))' "$cd_value"
check "Content-Disposition is an attachment with an ASCII filename=" \
    grep -qE '^attachment; filename="[ -~]+"' <<<"$cd_value"
check "the header is ASCII only" bash -c '! LC_ALL=C grep -q "[^ -~]" <<<"$1"' _ "$cd_value"
result_headers "$mid" video/mp4
check "a plain name's Content-Disposition names it" \
    grep -qF 'attachment; filename="clip.mp4"' <<<"$(hdr_value "$W/rh" content-disposition)"

# ====== 1. API error codes ====================================================================
# 431: headers over [rest] max_header_bytes (4096 here), answered by libmicrohttpd itself.
big_header="X-Padding: $(head -c 5000 /dev/zero | tr '\0' a)"
api GET /v1/status -H "$big_header" >/dev/null 2>&1
check "a 5000-byte header is 431 ($STATUS)" test "$STATUS" = 431
api GET /v1/status -H "X-Padding: $(head -c 1000 /dev/zero | tr '\0' a)" >/dev/null 2>&1
check "a 1000-byte header is 200 ($STATUS)" test "$STATUS" = 200

# missing_field: a file part without filename= and no file_name field (curl -F always sends a
# filename for a file, so the body is made by hand).
{
    printf -- '--XB\r\nContent-Disposition: form-data; name="task_type"\r\n\r\n%s\r\n' "$TYPE"
    printf -- '--XB\r\nContent-Disposition: form-data; name="file_data"\r\n'
    printf -- 'Content-Type: application/octet-stream\r\n\r\n'
    cat "$FIX/clip.mp4"
    printf -- '\r\n--XB--\r\n'
} >"$W/noname.body"
expect_error "POST without any file name" 400 missing_field POST /v1/tasks \
    -H 'Content-Type: multipart/form-data; boundary=XB' --data-binary "@$W/noname.body"
check "no upload left after missing_field" no_tmp_dirs

# field_too_long: params over 16 KiB; exactly 16 KiB passes the length check (and then fails
# on its value, so no task is made).
pad() { # JSON LENGTH: JSON padded with spaces to LENGTH bytes
    python3 -c 'import sys; j, n = sys.argv[1], int(sys.argv[2]); print(j + " " * (n - len(j)), end="")' "$1" "$2"
}
expect_error "params of 16385 bytes" 400 field_too_long POST /v1/tasks -F "task_type=$TYPE" \
    -F "file_data=@$FIX/clip.mp4" --form-string "params=$(pad '{"crf":28}' 16385)"
expect_error "params of exactly 16384 bytes pass the length check" 422 invalid_params POST \
    /v1/tasks -F "task_type=$TYPE" -F "file_data=@$FIX/clip.mp4" \
    --form-string "params=$(pad '{"crf":99}' 16384)"
check "no upload left after field_too_long" no_tmp_dirs

# not_done for a task in progress, and /v1/status while it converts.
slow=$(submit "$FIX/slow.mp4" --form-string 'params={"preset":"medium"}')
add "$slow"
check "the slow task is in_progress" wait_state "$slow" in_progress 30
expect_error "result of a task in progress" 409 not_done GET "/v1/tasks/$slow/result"
check "it is still in_progress after the 409" \
    test "$(curl -s "$URL/v1/tasks/$slow" | jq -r .state)" = in_progress
if wait_for 5 status_is '.working == 1'; then
    # max_workers: the converter's 2 and the http pool's 4 (the default [callback] http_workers)
    check "status while one converts: working 1, max_workers 6, free_workers 5 ($(jq -c . "$W/status"))" \
        jq -e '.working == 1 and .max_workers == 6 and .free_workers == 5' "$W/status"
else
    fail "status never showed one working: $(cat "$W/status")"
fi

# ====== 2. worker_crashed: the converter child killed on each of max_attempts = 2 attempts ====
# child_other_than PID: prints the convert daemon's child that is not PID.
child_other_than() {
    local c
    c=$(pgrep -P "${TM_PID[convert]}" | grep -vx -- "$1" | head -n 1) || return 1
    [ -n "$c" ] && echo "$c"
}
c1=
wait_for 10 child_other_than 0 >/dev/null && c1=$(child_other_than 0)
check "a conversion child runs (pid ${c1:-none})" test -n "$c1"
[ -n "$c1" ] && kill -KILL "$c1"
c2=
wait_for 20 child_other_than "${c1:-0}" >/dev/null && c2=$(child_other_than "${c1:-0}")
check "attempt 2 runs in a new child (pid ${c2:-none})" test -n "$c2"
claim=$ROOT/data/in_progress/$slow/claim.json
check "claim.json counts attempt 2 while it runs" \
    wait_for 5 bash -c '[ "$(jq .attempts "$1" 2>/dev/null)" = 2 ]' _ "$claim"
[ -n "$c2" ] && kill -KILL "$c2"
task_failed_with "$slow" worker_crashed 'signal 9'
check "worker_crashed: failed/.../claim.json says attempts 2" \
    test "$(jq .attempts "$ROOT/data/failed/$slow/claim.json")" = 2
check "worker_crashed: the task object says attempts 2" test "$(jq .attempts "$W/task")" = 2
check "no third attempt was started" test -z "$(pgrep -P "${TM_PID[convert]}")"
if wait_for 5 status_is '.working == 0'; then
    check "status when idle: working 0, max_workers 6, free_workers 6 ($(jq -c . "$W/status"))" \
        jq -e '.working == 0 and .max_workers == 6 and .free_workers == 6' "$W/status"
else
    fail "status never showed idle: $(cat "$W/status")"
fi

# ====== 1. queue_unavailable and /healthz, one daemon down at a time ===========================
check_health "healthz with all up" 200 "$ALL_UP"
check "queue stops cleanly" tm_stop queue
expect_error "GET /v1/status without the queue" 503 queue_unavailable GET /v1/status
expect_error "DELETE without the queue" 503 queue_unavailable DELETE "/v1/tasks/$mid"
# Without the queue rest cannot learn whether convert and callback run: they read false too.
check_health "healthz without the queue" 503 \
    '.status == "degraded" and .daemons.rest == true and .daemons.queue == false'
tm_start queue
check_health "healthz once the queue is back" 200 "$ALL_UP"
api GET "/v1/tasks/$mid" >/dev/null
check "the 503 DELETE deleted nothing" test "$STATUS" = 200

check "callback stops cleanly" tm_stop callback
check_health "healthz without callback" 503 \
    '.status == "degraded" and .daemons == {"rest":true,"queue":true,"convert":true,"callback":false}'
tm_start callback
check_health "healthz once callback is back" 200 "$ALL_UP"

check "convert stops cleanly" tm_stop convert
check_health "healthz without convert" 503 \
    '.status == "degraded" and .daemons == {"rest":true,"queue":true,"convert":false,"callback":true}'

# ====== 2. bad_request_file: request.json made invalid while the task waits ===================
bad=$(submit "$FIX/clip.mp4" --form-string file_name=badreq.mp4)
add "$bad"
check "without convert the task is pending" wait_state "$bad" pending 10
req=$ROOT/data/pending/$bad/request.json
jq '.size = -1' "$req" >"$req.new" && mv "$req.new" "$req"
tm_start convert
check_health "healthz once convert is back" 200 "$ALL_UP"
check "bad_request_file: the job ends in failed/" \
    wait_for 30 test -f "$ROOT/data/failed/$bad/error.json"
check "bad_request_file: error.json says so" \
    test "$(jq -r .code "$ROOT/data/failed/$bad/error.json" 2>/dev/null)" = bad_request_file
check "bad_request_file: no output file left" \
    test -z "$(find "$ROOT/data/failed/$bad" -name 'output*')"
api GET '/v1/tasks?state=failed&limit=1000' >"$W/list"
check "bad_request_file: the listing shows it failed with a message" \
    jq -e --arg id "$bad" '.tasks[] | select(.id == $id) | .state == "failed" and
        .error.code == "bad_request_file" and (.error.message | length > 0)' "$W/list"
# PRODUCT BUG: the task above is listed by GET /v1/tasks (with its error), but GET
# /v1/tasks/<id> and DELETE /v1/tasks/<id> answer 404 task_not_found: rest's find_visible()
# refuses a request.json that task_load() rejects, while the listing reads it with
# json_read_at(). The documented bad_request_file is never in a task object one can GET, and
# the client cannot delete the task. These two checks fail until that is fixed.
api GET "/v1/tasks/$bad" >"$W/task"
if [ "$STATUS" = 200 ] && [ "$(jq -r .error.code "$W/task")" = bad_request_file ]; then
    ok "bad_request_file: GET the task object shows the code"
else
    fail "PRODUCT BUG: GET /v1/tasks/$bad of a bad_request_file task listed as failed is $STATUS $(jq -r '.error.code' "$W/task")"
fi
api DELETE "/v1/tasks/$bad" >/dev/null
check "PRODUCT BUG if it fails: DELETE of a listed bad_request_file task is 204 ($STATUS)" \
    test "$STATUS" = 204
if [ "$STATUS" = 204 ]; then # gone: the listing checks below must not expect it
    for i in "${!ALL_IDS[@]}"; do [ "${ALL_IDS[$i]}" = "$bad" ] && unset "ALL_IDS[$i]"; done
    ALL_IDS=("${ALL_IDS[@]}")
fi

# ====== 1. insufficient_storage before the body ================================================
check "rest stops cleanly" tm_stop rest
# [rest] min_free_bytes (2^62) far over the free space; the default max_header_bytes.
write_conf "workers = 2" "max_attempts = 2" "[rest]" "min_free_bytes = 4611686018427387904"
tm_start rest
: >"$W/err"
: >"$W/hdr"
out=$(curl -s -S -o "$W/err" -D "$W/hdr" -w '%{http_code} %{size_upload}' \
    -H 'Expect: 100-continue' -F "task_type=$TYPE" -F "file_data=@$FIX/wide.mp4" \
    "$URL/v1/tasks" 2>/dev/null) || true
STATUS=${out% *}
judge_error "POST with min_free_bytes over the free space" 507 insufficient_storage
check "507 before the body: curl sent none of it (size_upload ${out#* })" test "${out#* }" = 0
check "nothing left in data/request" test -z "$(find "$ROOT/data/request" -mindepth 1)"
api GET /v1/status -H "$big_header" >/dev/null 2>&1
check "with the default max_header_bytes the 5000-byte header is 200 ($STATUS)" test "$STATUS" = 200
check "rest stops cleanly again" tm_stop rest
conf
tm_start rest

# ====== 2. io_error: the output cannot be written past [convert] max_output_bytes ==============
check "convert stops cleanly for max_output_bytes" tm_stop convert
conf "max_output_bytes = 20000"
tm_start convert
io=$(submit "$FIX/wide.mp4")
add "$io"
task_failed_with "$io" io_error 'output file'
check "io_error: no partial output left either" test -z "$(find "$ROOT/data" -name '*.partial')"

# ====== 2. limits, unsupported_stream, verify_failed, encode_error =============================
check "convert stops cleanly for the limits" tm_stop convert
conf "max_height = 200" "max_streams = 2" "max_duration = 3"
tm_start convert
tall=$(submit "$FIX/tall.mkv")
long=$(submit "$FIX/long.mkv")
many=$(submit "$FIX/streams.mkv")
font=$(submit "$FIX/font.mkv" --form-string file_name=font.mp4)
fontmkv=$(submit "$FIX/font.mkv")
liar=$(submit "$FIX/liar.mkv")
tiny=$(submit "$FIX/tiny.mkv")
for id in "$tall" "$long" "$many" "$font" "$fontmkv" "$liar" "$tiny"; do add "$id"; done
task_failed_with "$tall" limits_exceeded '320x240, larger than the limit of 8192x200' \
    'limits_exceeded (max_height)'
task_failed_with "$long" limits_exceeded 'lasts 4 s, longer than the limit of 3 s' \
    'limits_exceeded (max_duration)'
task_failed_with "$many" limits_exceeded '3 streams, more than the limit of 2' \
    'limits_exceeded (max_streams)'
task_failed_with "$font" unsupported_stream 'stream #1 \(attachment, ttf\) cannot be stored in mp4'
# The same file as .mkv converts: the code comes from the output container.
check "the font file named .mkv converts (attachment copied)" wait_state "$fontmkv" done 60
task_failed_with "$liar" verify_failed 'output lasts 2\.[0-9]+ s but the input lasts 2\.4'
task_failed_with "$tiny" encode_error 'cannot start the HEVC encoder \(2x2'
# encode_error is not made through [convert] max_memory_bytes: what a small RLIMIT_AS breaks
# depends on the machine (decoder threads scale with the cores), and was input_unreadable,
# decode_error, encode_error while encoding, a hang or a SIGSEGV depending on the value; under
# AddressSanitizer (TASKMILL_SANITIZE) RLIMIT_AS is not even applied. The 2x2 input above
# fails to open the encoder in every build.

# ====== 3. listing and status ===================================================================
check "convert stops cleanly for the end" tm_stop convert
conf
tm_start convert
api GET '/v1/tasks?limit=1000' >"$W/all"
check "GET /v1/tasks is 200" test "$STATUS" = 200
check "the whole list has next_cursor null" test "$(jq -c .next_cursor "$W/all")" = null
check "created_at ascending (oldest first)" \
    jq -e '[.tasks[].created_at] as $c | $c == ($c | sort)' "$W/all"
check "the list is the ${#ALL_IDS[@]} tasks in the order they were made" \
    test "$(jq -r '.tasks[].id' "$W/all")" = "$(printf '%s\n' "${ALL_IDS[@]}")"
# Pages of 2 with the cursor give the same tasks in the same order, none twice, none missing.
cursor='' pages=0 shapes_ok=1
: >"$W/paged"
while :; do
    api GET "/v1/tasks?limit=2${cursor:+&cursor=$cursor}" >"$W/page"
    pages=$((pages + 1))
    [ "$STATUS" = 200 ] || { shapes_ok=0; break; }
    jq -r '.tasks[].id' "$W/page" >>"$W/paged"
    n=$(jq '.tasks | length' "$W/page")
    cursor=$(jq -r '.next_cursor // empty' "$W/page")
    if [ -z "$cursor" ]; then
        [ "$n" -ge 1 ] || shapes_ok=0
        break
    fi
    [ "$n" = 2 ] || shapes_ok=0
    [ $pages -lt 100 ] || { shapes_ok=0; break; }
done
check "pages of 2: full pages carry a cursor, the last one next_cursor null ($pages pages)" \
    test $shapes_ok = 1 -a "$(jq -c .next_cursor "$W/page")" = null
check "pages of 2: no task repeated" test -z "$(sort "$W/paged" | uniq -d)"
check "pages of 2: the same tasks in the same order as the whole list" \
    test "$(cat "$W/paged")" = "$(jq -r '.tasks[].id' "$W/all")"
check_health "healthz at the end" 200 "$ALL_UP"
