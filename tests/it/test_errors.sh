#!/usr/bin/env bash
# test_errors.sh - bad requests get the right status and a JSON error with a stable code, corrupt inputs fail cleanly, the server keeps serving and nothing accepted is lost.
. "$(dirname "$0")/lib.sh"

write_conf
tm_start_all

make_mp4 "$FIX/clip.mp4" 1
python3 -c 'import random,sys; sys.stdout.buffer.write(random.Random(7).randbytes(64000))' >"$FIX/x.mp4"
# A real HLS playlist with real segments, under a video name: what only the demuxer whitelist
# keeps from being converted. ffprobe must open it as HLS with a video stream, or the case
# below would pass for the wrong reason (a playlist that does not open even without a whitelist).
mkdir -p "$FIX/hls"
ffmpeg -v error -y -f lavfi -i "testsrc2=size=160x120:rate=25" -t 2 -c:v libx264 -preset ultrafast \
    -pix_fmt yuv420p -f hls -hls_time 1 -hls_list_size 0 -hls_segment_filename "$FIX/hls/seg%d.ts" \
    "$FIX/hls/playlist.m3u8"
cp "$FIX/hls/playlist.m3u8" "$FIX/hls/evil.mp4" # beside its segments: relative names resolve
hls_probe=$(ffprobe -v error -show_entries format=format_name:stream=codec_type -of json "$FIX/hls/evil.mp4" 2>&1 || true)
if [ "$(jq -r '.format.format_name + ":" + ([.streams[] | select(.codec_type == "video")] | length | tostring)' <<<"$hls_probe" 2>/dev/null)" != hls:1 ] ||
    ! grep -q '^seg0\.ts$' "$FIX/hls/evil.mp4"; then
    fail "the HLS fixture is not a playlist ffprobe opens as HLS with one video stream: $hls_probe $(cat "$FIX/hls/evil.mp4")"
    exit 1
fi
: >"$FIX/empty.mp4"
printf 'just some notes\n' >"$FIX/notes.txt"
head -c 300000 /dev/zero >"$FIX/big.mp4"

TYPE=convert_video_to_libx265
printf 'a\0b' >"$W/nul.txt"
UNKNOWN=3f1c2d4e-5b6a-4c7d-8e9f-0a1b2c3d4e5f
declare -A EXPECT # id -> the state it must end in

# post_error DESCRIPTION STATUS CODE [curl -F args...]: the same for POST /v1/tasks.
post_error() {
    local what=$1 want_status=$2 want_code=$3
    shift 3
    expect_error "POST $what" "$want_status" "$want_code" POST /v1/tasks "$@"
}

# no_tmp_dirs: no upload left half-way in data/request (waits up to 2 s for a connection's
# cleanup, which runs just after the response is sent).
no_tmp_dirs() {
    local i
    for ((i = 0; i < 20; i++)); do
        [ -z "$(find "$ROOT/data/request" -mindepth 1 -maxdepth 1 -name '.tmp-*' | head -1)" ] && return 0
        sleep 0.1
    done
    find "$ROOT/data/request" -mindepth 1 -maxdepth 1 -name '.tmp-*' >&2
    return 1
}

# wait_health STATUS: polls /healthz until it answers STATUS (the queue learns of a daemon coming
# or going asynchronously), up to 5 s.
wait_health() {
    local i
    for ((i = 0; i < 50; i++)); do
        api GET /healthz >/dev/null
        [ "$STATUS" = "$1" ] && return 0
        sleep 0.1
    done
    echo "healthz is $STATUS, not $1" >&2
    return 1
}

# --- task ids ------------------------------------------------------------------------------
expect_error "GET unknown id" 404 task_not_found GET "/v1/tasks/$UNKNOWN"
expect_error "GET result of unknown id" 404 task_not_found GET "/v1/tasks/$UNKNOWN/result"
expect_error "DELETE unknown id" 404 task_not_found DELETE "/v1/tasks/$UNKNOWN"
expect_error "GET malformed id" 400 bad_id GET /v1/tasks/not-a-uuid
expect_error "GET upper-case uuid" 400 bad_id GET "/v1/tasks/${UNKNOWN^^}"
expect_error "GET result of upper-case uuid" 400 bad_id GET "/v1/tasks/${UNKNOWN^^}/result"
expect_error "DELETE malformed id" 400 bad_id DELETE /v1/tasks/not-a-uuid
expect_error "GET uuid with an extra char" 400 bad_id GET "/v1/tasks/${UNKNOWN}0"
expect_error "GET empty id" 400 bad_id GET /v1/tasks/
# The server decodes %2F to '/', so the id spans segments and no route matches.
expect_error "GET encoded traversal id" 404 no_such_endpoint GET '/v1/tasks/..%2F..%2Fetc%2Fpasswd' --path-as-is
expect_error "GET literal traversal id" 404 no_such_endpoint GET '/v1/tasks/../../etc/passwd' --path-as-is
expect_error "GET unknown sub-resource" 404 no_such_endpoint GET "/v1/tasks/$UNKNOWN/bogus"

# --- routing ---------------------------------------------------------------------------------
expect_error "unknown endpoint" 404 no_such_endpoint GET /v1/nope
expect_error "unknown top-level endpoint" 404 no_such_endpoint GET /nope
expect_error "POST / (the dashboard takes none)" 405 method_not_allowed POST /
expect_error "PUT /v1/tasks" 405 method_not_allowed PUT /v1/tasks
expect_error "DELETE /v1/tasks" 405 method_not_allowed DELETE /v1/tasks
expect_error "POST /v1/tasks/ID" 405 method_not_allowed POST "/v1/tasks/$UNKNOWN"
expect_error "POST /healthz" 405 method_not_allowed POST /healthz

# --- a body on a path that takes none: read and dropped, the path's own answer follows --------
expect_error "PUT /v1/task-types with a body" 405 method_not_allowed PUT /v1/task-types --data x
expect_error "POST /v1/status with a JSON body" 405 method_not_allowed POST /v1/status -d '{}'
expect_error "POST /v1/tasks/ID with a body" 405 method_not_allowed POST "/v1/tasks/$UNKNOWN" -d '{}'
expect_error "DELETE /v1/tasks/ID with a body" 404 task_not_found DELETE "/v1/tasks/$UNKNOWN" -d '{}'
expect_error "POST /nope with a body" 404 no_such_endpoint POST /nope --data-binary 'hello'
expect_error "POST /v1/status with a 300 kB body" 405 method_not_allowed POST /v1/status \
    --data-binary "@$FIX/big.mp4" -H 'Expect: 100-continue'
expect_error "POST /nope with a chunked body" 404 no_such_endpoint POST /nope \
    -H 'Transfer-Encoding: chunked' -H 'Expect: 100-continue' --data-binary 'hello'
# Keep-alive survives a small dropped body: both answers come on one connection.
curl -s -o /dev/null -o /dev/null -w '%{http_code} %{num_connects}\n' -X POST -d '{}' \
    "$URL/v1/status" -X POST "$URL/v1/status" >"$W/ka" || true
check "a dropped small body keeps the connection alive ($(tr '\n' ' ' <"$W/ka"))" \
    test "$(tr '\n' ' ' <"$W/ka")" = "405 1 405 0 "

# --- listing ---------------------------------------------------------------------------------
expect_error "list with a bogus state" 400 bad_state GET '/v1/tasks?state=bogus'
expect_error "list with limit=0" 400 bad_limit GET '/v1/tasks?limit=0'
expect_error "list with limit=1001" 400 bad_limit GET '/v1/tasks?limit=1001'
expect_error "list with limit=abc" 400 bad_limit GET '/v1/tasks?limit=abc'
expect_error "list with a bogus cursor" 400 bad_cursor GET '/v1/tasks?cursor=bogus'
expect_error "list with a cursor without id" 400 bad_cursor GET '/v1/tasks?cursor=123.'

# --- uploads ---------------------------------------------------------------------------------
FA=(-F "file_data=@$FIX/clip.mp4")
TA=(-F "task_type=$TYPE")
post_error "without task_type" 400 missing_field "${FA[@]}"
post_error "without file_data" 400 missing_field "${TA[@]}" -F priority=5
post_error "with an unknown task_type" 422 unknown_task_type -F task_type=make_coffee "${FA[@]}"
post_error "with params crf 99" 422 invalid_params "${TA[@]}" "${FA[@]}" --form-string 'params={"crf":99}'
post_error "with params crf -1" 422 invalid_params "${TA[@]}" "${FA[@]}" --form-string 'params={"crf":-1}'
post_error "with params crf as a string" 422 invalid_params "${TA[@]}" "${FA[@]}" --form-string 'params={"crf":"20"}'
post_error "with an unknown param" 422 invalid_params "${TA[@]}" "${FA[@]}" --form-string 'params={"bitrate":1}'
post_error "with an unknown preset" 422 invalid_params "${TA[@]}" "${FA[@]}" --form-string 'params={"preset":"warp"}'
post_error "with params as an array" 400 bad_params "${TA[@]}" "${FA[@]}" --form-string 'params=[1]'
post_error "with params not JSON" 400 bad_params "${TA[@]}" "${FA[@]}" --form-string 'params=not json'
post_error "with duplicate params keys" 400 bad_params "${TA[@]}" "${FA[@]}" --form-string 'params={"crf":20,"crf":21}'
for p in -1 1001 abc 5x ''; do
    post_error "with priority '$p'" 400 bad_priority "${TA[@]}" "${FA[@]}" --form-string "priority=$p"
done
long=$(printf 'a%.0s' $(seq 1 252)).mp4 # 256 bytes
for name in ../../etc/passwd.mp4 a/b.mp4 'a\b.mp4' $'a\x01b.mp4' $'a\x7fb.mp4' $'a\xffb.mp4' "$long" ..mp4; do
    post_error "with file_name $(printf %q "${name:0:40}")" 400 bad_file_name "${TA[@]}" "${FA[@]}" --form-string "file_name=$name"
done
post_error "with a traversal in the part's filename" 400 bad_file_name "${TA[@]}" -F "file_data=@$FIX/clip.mp4;filename=../../x.mp4"
post_error "with a non-video file_name" 422 unsupported_file_type "${TA[@]}" "${FA[@]}" --form-string file_name=notes.txt
post_error "with a non-video file" 422 unsupported_file_type "${TA[@]}" -F "file_data=@$FIX/notes.txt"
post_error "with a name without extension" 422 unsupported_file_type "${TA[@]}" "${FA[@]}" --form-string file_name=video
post_error "with an empty file" 400 empty_file "${TA[@]}" -F "file_data=@$FIX/empty.mp4"
post_error "with an unknown field" 400 unknown_field "${TA[@]}" "${FA[@]}" -F colour=blue
post_error "with a repeated field" 400 repeated_field "${TA[@]}" "${FA[@]}" -F priority=1 -F priority=2
post_error "with a repeated task_type" 400 repeated_field "${TA[@]}" "${TA[@]}" "${FA[@]}"
post_error "with two files" 400 repeated_field "${TA[@]}" "${FA[@]}" "${FA[@]}"
post_error "with an ftp callback_url" 400 bad_callback_url "${TA[@]}" "${FA[@]}" -F callback_url=ftp://x
post_error "with a callback_url without scheme" 400 bad_callback_url "${TA[@]}" "${FA[@]}" -F callback_url=example.com/hook
post_error "with a 5000-byte file_path" 400 field_too_long "${TA[@]}" "${FA[@]}" --form-string "file_path=$(printf 'p%.0s' $(seq 1 5000))"
printf -- '--XYZ\r\nContent-Disposition: form-data; name="task_type"\r\n\r\n%s\r\n--XYZ\r\nContent-Disposition: form-data; name="file_data"; filename="a.mp4"\r\n\r\nabc' "$TYPE" >"$W/trunc.body"
post_error "with a multipart body cut short" 400 malformed_multipart -H 'Content-Type: multipart/form-data; boundary=XYZ' --data-binary "@$W/trunc.body"
post_error "with an empty JSON body" 400 missing_field -H 'Content-Type: application/json' -d '{}'
post_error "with a JSON body that is not JSON" 400 bad_json -H 'Content-Type: application/json' -d '{"task_type":'
post_error "with a url-encoded body" 415 not_multipart --data "task_type=$TYPE"
# Text that is not UTF-8, or control characters, in every text field: 400 with the field's code.
post_error "with a non-UTF-8 file_path" 400 bad_file_path "${TA[@]}" "${FA[@]}" --form-string $'file_path=\xff'
post_error "with a non-UTF-8 callback_url" 400 bad_callback_url "${TA[@]}" "${FA[@]}" --form-string $'callback_url=http://example.com/\xff'
post_error "with a non-UTF-8 task_type" 400 bad_encoding --form-string $'task_type=\xfe' "${FA[@]}"
post_error "with a non-UTF-8 priority" 400 bad_priority "${TA[@]}" "${FA[@]}" --form-string $'priority=5\xc3'
post_error "with a non-UTF-8 idempotency_key" 400 bad_idempotency_key "${TA[@]}" "${FA[@]}" --form-string $'idempotency_key=k\xe9'
post_error "with a NUL byte in file_path" 400 bad_file_path "${TA[@]}" "${FA[@]}" -F 'file_path=<'"$W/nul.txt"
post_error "with CR LF in callback_url" 400 bad_callback_url "${TA[@]}" "${FA[@]}" --form-string $'callback_url=http://example.com/\r\n<0>forged'
post_error "with a tab in file_path" 400 bad_file_path "${TA[@]}" "${FA[@]}" --form-string $'file_path=/a\tb'
post_error "with a space in callback_url" 400 bad_callback_url "${TA[@]}" "${FA[@]}" --form-string 'callback_url=http://example.com/a b'
# The field comes first: the file after it is not stored (nothing in request/ while it streams).
check "a bad field before the file: the file is not stored" python3 - "$PORT" "$ROOT/data/request" <<'PY'
import os, socket, sys, time
port, req = int(sys.argv[1]), sys.argv[2]
head = (b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n"
        b"Content-Length: %d\r\n\r\n")
pre = (b"--B\r\nContent-Disposition: form-data; name=\"file_path\"\r\n\r\n\xff\r\n"
       b"--B\r\nContent-Disposition: form-data; name=\"file_data\"; filename=\"a.mp4\"\r\n\r\n")
data, post = b"x" * (4 << 20), b"\r\n--B--\r\n"
s = socket.create_connection(("127.0.0.1", port))
s.sendall(head % (len(pre) + len(data) + len(post)) + pre + data[: 2 << 20])
time.sleep(0.5)
stored = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(req) for f in fs)
s.sendall(data[2 << 20 :] + post)
reply = s.recv(4096)
print(reply.split(b"\r\n")[0], "bytes stored mid-upload:", stored)
sys.exit(0 if stored == 0 and b" 400 " in reply.split(b"\r\n")[0] and b"bad_file_path" in reply else 1)
PY
# Two file_data parts, the first empty.
printf -- '--B\r\nContent-Disposition: form-data; name="task_type"\r\n\r\n%s\r\n--B\r\nContent-Disposition: form-data; name="file_data"; filename="a.mp4"\r\n\r\n\r\n--B\r\nContent-Disposition: form-data; name="file_data"; filename="b.mp4"\r\n\r\nDATA\r\n--B--\r\n' "$TYPE" >"$W/two.body"
post_error "with an empty file_data part and a second one" 400 repeated_field -H 'Content-Type: multipart/form-data; boundary=B' --data-binary "@$W/two.body"
post_error "with a text body" 415 not_multipart -H 'Content-Type: text/plain' --data-binary 'hello'
api GET /healthz >/dev/null
check "the server still answers after the refusals" test "$STATUS" = 200
check "no upload left in data/request after the refusals" no_tmp_dirs
api GET /v1/tasks >"$W/out"
check "no task was created by a refused request ($STATUS)" test "$STATUS:$(jq '.tasks | length' "$W/out")" = 200:0
check "data/request is empty" test -z "$(find "$ROOT/data/request" -mindepth 1 | head -1)"

# The boundary: a 255-byte name is accepted.
ok_name=$(printf 'b%.0s' $(seq 1 251)).mp4
id=$(submit "$FIX/clip.mp4" --form-string "file_name=$ok_name")
check "a 255-byte file_name is accepted" test -n "$id"
check "and echoed back" test "$(jget "/v1/tasks/$id" .file_name)" = "$ok_name"
EXPECT[$id]="done"
check "and converted" wait_state "$id" "done" 60

# --- 409: the result of a task that is not done -------------------------------------------------
check "convert stops cleanly" tm_stop convert
id=$(submit "$FIX/clip.mp4" --form-string file_name=pending.mp4)
EXPECT[$id]="done"
wait_state "$id" pending 10 || true
check "task stays pending without a converter" test "$(jget "/v1/tasks/$id" .state)" = pending
expect_error "result of a pending task" 409 not_done GET "/v1/tasks/$id/result"
check "healthz is 503 without a converter" wait_health 503
# The HLS playlist: the converter's jail lets it read its own job folder only, so the segments
# go there, beside the upload, while no converter runs: a converter without the demuxer
# whitelist would open the playlist, read the segments and convert them.
evil=$(submit "$FIX/hls/evil.mp4")
EXPECT[$evil]=failed
check "the HLS playlist is pending" wait_state "$evil" pending 10
cp "$FIX"/hls/seg*.ts "$ROOT/data/pending/$evil/"
tm_start convert
check "the pending task is done once convert is back" wait_state "$id" "done" 60

# --- corrupt inputs ------------------------------------------------------------------------------
bad=$(submit "$FIX/x.mp4")
EXPECT[$bad]=failed
check "random bytes end failed" wait_state "$bad" failed 60
api GET "/v1/tasks/$bad" >"$W/out"
code=$STATUS:$(jq -r .error.code "$W/out")
check "random bytes: error code is input_unreadable or decode_error ($code)" \
    grep -qxE '200:(input_unreadable|decode_error)' <<<"$code"
check "random bytes: error message is set" test -n "$(jq -r '.error.message // empty' "$W/out")"
check "random bytes: no result" test "$(jq -r .result "$W/out")" = null
expect_error "result of a failed task" 409 not_done GET "/v1/tasks/$bad/result"
check "HLS playlist ends failed" wait_state "$evil" failed 60
api GET "/v1/tasks/$evil" >"$W/out"
check "HLS playlist: error code is input_unreadable ($STATUS $(jq -r .error.code "$W/out"))" \
    test "$STATUS:$(jq -r .error.code "$W/out")" = 200:input_unreadable
check "HLS playlist: error message is set" test -n "$(jq -r '.error.message // empty' "$W/out")"
check "HLS playlist: no result" test "$(jq -r .result "$W/out")" = null
check "HLS playlist: the job is in failed/" test -d "$ROOT/data/failed/$evil"
check "HLS playlist: no output file anywhere" test -z "$(find "$ROOT/data" -path "*$evil*" -name 'output*')"
# The server keeps serving: a real clip converts after the failures.
id=$(submit "$FIX/clip.mp4" --form-string file_name=after.mp4)
EXPECT[$id]="done"
check "a real clip after the corrupt ones is done" wait_state "$id" "done" 60
api GET "/v1/tasks/$id/result" >"$W/after.mp4"
check "its result downloads (200, got $STATUS) and matches the sha256" \
    test "$STATUS:$(sha256sum "$W/after.mp4" | cut -d' ' -f1)" = "200:$(jget "/v1/tasks/$id" .result.sha256)"

# --- 413 with a small upload limit ---------------------------------------------------------------
check "rest stops cleanly" tm_stop rest
write_conf "[rest]" "max_upload_bytes = 100000"
tm_start rest
post_error "over max_upload_bytes (Content-Length)" 413 body_too_large "${TA[@]}" -H 'Expect: 100-continue' -F "file_data=@$FIX/big.mp4"
check "no upload left after the 413" no_tmp_dirs
# Chunked: no Content-Length, so the limit is found while reading; a 413 or a closed connection.
API_TRANSPORT_OK=1 api POST /v1/tasks "${TA[@]}" -F "file_data=@$FIX/big.mp4" -H 'Transfer-Encoding: chunked' >"$W/out"
check "chunked upload over the limit: 413 or closed (got $STATUS)" \
    bash -c "[ '$STATUS' = 000 ] || { [ '$STATUS' = 413 ] && [ \"\$(jq -r .error.code '$W/out')\" = body_too_large ]; }"
check "no upload left after the chunked 413" no_tmp_dirs
check "after an early form error a chunked body is still cut at max_upload_bytes" \
    python3 - "$PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
          b"Content-Type: multipart/form-data; boundary=B\r\n\r\n")
part = (b"--B\r\nContent-Disposition: form-data; name=\"colour\"\r\n\r\nblue\r\n"
        b"--B\r\nContent-Disposition: form-data; name=\"file_data\"; filename=\"a.mp4\"\r\n\r\n")
chunk = b"x" * 16384
sent = 0
try:
    s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
    while sent < 50 << 20:  # 50 MB, 500 times the limit
        s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sent += len(chunk)
except OSError:
    pass
print("sent", sent, "bytes before the server closed")
sys.exit(0 if sent < 20 << 20 else 1)
PY
api GET /v1/tasks >"$W/out"
check "no task was created by the 413s ($STATUS)" test "$STATUS:$(jq '.tasks | length' "$W/out")" = "200:${#EXPECT[@]}"
# Under the limit still works.
make_mp4 "$FIX/tiny.mp4" 1 64x48
id=$(submit "$FIX/tiny.mp4")
check "an upload under the limit is accepted ($(stat -c %s "$FIX/tiny.mp4") bytes)" test -n "$id"
EXPECT[$id]="done"
check "and converted" wait_state "$id" "done" 60
check "rest stops cleanly again" tm_stop rest
write_conf
tm_start rest

# --- a result.json that names no file: 500 io_error, not a read of a stale fd --------------------
for id in "${!EXPECT[@]}"; do [ "${EXPECT[$id]}" = done ] && break; done
cp "$ROOT/data/done/$id/result.json" "$W/result.json"
jq 'del(.disk_name)' "$W/result.json" >"$ROOT/data/done/$id/result.json"
expect_error "result of a task whose result.json names no file" 500 io_error GET "/v1/tasks/$id/result"
jq '.disk_name = "../../../etc/passwd"' "$W/result.json" >"$ROOT/data/done/$id/result.json"
expect_error "result of a task whose result.json names a path" 500 io_error GET "/v1/tasks/$id/result"
cp "$W/result.json" "$ROOT/data/done/$id/result.json"

# --- the end state ---------------------------------------------------------------------------------
check "healthz is 200 after all that" wait_health 200
check "no .tmp-* in data/request" no_tmp_dirs
api GET '/v1/tasks?limit=1000' >"$W/out"
check "the list answers 200 ($STATUS)" test "$STATUS" = 200
check "the list has exactly the accepted tasks (${#EXPECT[@]})" \
    test "$(jq -r '.tasks[].id' "$W/out" | sort)" = "$(printf '%s\n' "${!EXPECT[@]}" | sort)"
for id in "${!EXPECT[@]}"; do
    check "task $id is ${EXPECT[$id]}" \
        test "$(jq -r --arg id "$id" '.tasks[] | select(.id == $id) | .state' "$W/out")" = "${EXPECT[$id]}"
done
api GET /v1/status >"$W/out"
check "status counts 4 done, 2 failed ($STATUS)" test "$STATUS:$(jq -c '[.done, .failed, .waiting, .working]' "$W/out")" = '200:[4,2,0,0]'
check "nothing written outside the root" test -z "$(files_outside_root)"
