#!/usr/bin/env bash
# test_hostile.sh - hostile input: callback targets that must never be reached (SSRF: loopback in
# every spelling), signed deliveries, a slowloris client, huge headers, the per-address
# connection limit, Range edge cases, traversal attempts in every field, deep JSON, malicious
# media (no moov atom, absurd dimensions, zero bytes), and a full disk (a small tmpfs root:
# 507, partial removed, the daemons keep serving). Every case checks the status and error code,
# that the server still answers, and that nothing appeared outside the root.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -eq 0 ]; then # a real small disk for the root
    mount -t tmpfs -o size=48m tmpfs "$ROOT"
    test_cleanup() { umount "$ROOT" 2>/dev/null || umount -l "$ROOT"; }
fi
write_conf "[rest]" "connection_timeout = 2" "header_timeout = 4" "max_connections_per_ip = 6" \
    "[callback]" "max_attempts = 3" "backoff = 1" "[convert]" "max_width = 4096"
tm_start_all
make_mp4 "$FIX/a.mp4" 1
alive() { test "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")" = 200; }
code() { jq -r .error.code "$W/out" 2>/dev/null; }
post() { api POST /v1/tasks -F task_type=convert_video_to_libx265 "$@" >"$W/out"; }

# --- SSRF: a receiver on loopback that must never hear from us.
start_receiver r 0
RP=$RPORT
ids=()
for target in "http://127.0.0.1:$RP/x" "http://[::ffff:127.0.0.1]:$RP/x" "http://2130706433:$RP/x" \
    "http://0x7f000001:$RP/x" "http://127.1:$RP/x" "http://localhost:$RP/x" "http://[::1]:$RP/x" \
    "http://0.0.0.0:$RP/x"; do
    post -F "file_data=@$FIX/a.mp4" -F "callback_url=$target"
    check "callback $target accepted for the task (201)" test "$STATUS" = 201
    ids+=("$(jq -r .id "$W/out")")
done
for id in "${ids[@]}"; do wait_state "$id" done 60; done
for id in "${ids[@]}"; do
    for _ in $(seq 50); do [ -f "$ROOT/data/done/$id/callback.json" ] && break; sleep 0.1; done
done
check "the loopback receiver got nothing" test ! -s "$W/r.log"
for i in "${!ids[@]}"; do
    check "callback.json $i records the refusal" \
        grep -q "refused to connect" "$ROOT/data/done/${ids[$i]}/callback.json"
    check "callback $i was given up at once, not retried" test \
        "$(jq -c '[(.attempts | length), .gave_up]' "$ROOT/data/done/${ids[$i]}/callback.json")" = "[1,true]"
done
for u in "file:///etc/passwd" "gopher://127.0.0.1/" "http//x" "ftp://example.com/"; do
    post -F "file_data=@$FIX/a.mp4" -F "callback_url=$u"
    check "callback_url $u: 400 bad_callback_url" test "$STATUS:$(code)" = 400:bad_callback_url
done

# Signed deliveries to an allow-listed receiver.
tm_stop callback
sed -i 's/^max_attempts = 3$/max_attempts = 3\nallow_networks = 127.0.0.0\/8\nsecret = s3cret/' "$TM_CONF"
tm_start callback
post -F "file_data=@$FIX/a.mp4" -F "callback_url=http://127.0.0.1:$RP/signed"
check "a task with an allow-listed callback: 201 ($STATUS)" test "$STATUS" = 201
sid=$(jq -r .id "$W/out")
wait_state "$sid" done 60
for _ in $(seq 50); do [ -s "$W/r.log" ] && break; sleep 0.1; done
check "the allow-listed receiver got the callback" test -s "$W/r.log"
check "the delivery's HMAC signature verifies" python3 - "$W/r.log" <<'PY'
import hmac, hashlib, json, sys
rec = json.loads(open(sys.argv[1]).readline())
h = {k.lower(): v for k, v in rec["headers"].items()}
t, v1 = (p.split("=", 1)[1] for p in h["x-taskmill-signature"].split(","))
raw = rec["raw"]
want = hmac.new(b"s3cret", (t + "." + raw).encode(), hashlib.sha256).hexdigest()
sys.exit(0 if hmac.compare_digest(want, v1) else 1)
PY
stop_receivers

# --- Slow and greedy clients.
check "slowloris: an idle half-sent request is closed after connection_timeout" python3 - "$PORT" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
s.settimeout(10)
t = time.time()
data = s.recv(100)
sys.exit(0 if data == b"" or b"408" in data else 1)
PY
check "server answers after slowloris" alive
# Headers dripped one byte a second (never idle for connection_timeout): cut at header_timeout.
check "headers dripped a byte a second are cut off after header_timeout" python3 - "$PORT" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /v1/status HTTP/1.1\r\n")
start = time.time()
try:
    for i in range(30):  # 30 s of dripping if nobody stops it
        s.sendall(b"X")
        time.sleep(1)
except OSError:
    pass
s.settimeout(2)
try:
    closed = s.recv(100) == b""
except OSError:
    closed = True
print("closed after %.1f s" % (time.time() - start))
sys.exit(0 if closed and time.time() - start < 15 else 1)
PY
check "server answers after the dripping client" alive
big=$(head -c 100000 /dev/zero | tr '\0' a)
st=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Big: $big" "$URL/v1/status" || true)
check "100 kB of headers refused ($st)" test "$st" = 431 -o "$st" = 413 -o "$st" = 000
check "server answers after huge headers" alive
check "per-client limit: the 7th connection gets 429 too_many_connections while 6 are open" \
    python3 - "$PORT" "${TM_PID[rest]}" <<'PY'
import json, os, socket, sys, time
port, rest_pid = int(sys.argv[1]), sys.argv[2]
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]

def accepted():
    """How many held connections rest has accepted: the server end of each (local port =
    rest's, remote port = ours) is a socket among rest's open fds."""
    mine = {"%04X" % h.getsockname()[1] for h in held}
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in list(f)[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if local.endswith(":%04X" % port) and remote.split(":")[1] in mine:
                inodes.add("socket:[%s]" % inode)
    fds = set()
    for fd in os.listdir("/proc/%s/fd" % rest_pid):
        try:
            fds.add(os.readlink("/proc/%s/fd/%s" % (rest_pid, fd)))
        except OSError:
            pass
    return len(inodes & fds)

deadline = time.time() + 3  # well within header_timeout (4 s), which would close them
while accepted() < 6:
    if time.time() > deadline:
        print("rest accepted only %d of the 6 held connections in 3 s" % accepted())
        sys.exit(1)
    time.sleep(0.02)
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
s.settimeout(5)
data = b""
while True:
    part = s.recv(4096)
    if not part:
        break
    data += part
head, _, body = data.partition(b"\r\n\r\n")
ok = head.startswith(b"HTTP/1.1 429") and json.loads(body)["error"]["code"] == "too_many_connections"
print(head.split(b"\r\n")[0].decode(), body[:80])
sys.exit(0 if ok else 1)
PY
check "server answers once those are gone" alive

# --- Traversal and junk in every field.
post -F "file_data=@$FIX/a.mp4" -F "file_name=../../../../tmp/pwned.mp4"
check "traversal in file_name: 400 bad_file_name" test "$STATUS:$(code)" = 400:bad_file_name
post -F "file_data=@$FIX/a.mp4;filename=../../x.mp4"
check "traversal in the part's filename: 400 bad_file_name" test "$STATUS:$(code)" = 400:bad_file_name
post -F "file_data=@$FIX/a.mp4" -F "file_path=../../../../etc"
check "traversal in file_path is only metadata (201)" test "$STATUS" = 201
api POST /v1/tasks -F "task_type=../../bin/sh" -F "file_data=@$FIX/a.mp4" >"$W/out"
check "traversal in task_type: 422 unknown_task_type" test "$STATUS:$(code)" = 422:unknown_task_type
post -F "file_data=@$FIX/a.mp4" -F 'params={"../../crf":1}'
check "traversal in a params key: 422 invalid_params" test "$STATUS:$(code)" = 422:invalid_params
post -F "file_data=@$FIX/a.mp4" -F "idempotency_key=../../../etc/passwd"
check "an idempotency key is only hashed, never a path (201)" test "$STATUS" = 201
api GET "/v1/tasks/..%2F..%2F..%2Fetc%2Fpasswd/result" >"$W/out"
check "an encoded traversal as id: 404" test "$STATUS" = 404
deep=$(python3 -c 'print("[" * 5000 + "]" * 5000)')
post -F "file_data=@$FIX/a.mp4" -F "params=$deep"
check "5000-deep params: 400 (bad_params or field_too_long): $(code)" test "$STATUS" = 400
post -F "file_data=@$FIX/a.mp4" -F "params={\"crf\":$(python3 -c 'print("1"*400)')}"
check "a huge number in params: rejected" test "$STATUS" = 400 -o "$STATUS" = 422

# --- Range edge cases on a finished result.
post -F "file_data=@$FIX/a.mp4"
check "a task for the Range cases: 201 ($STATUS)" test "$STATUS" = 201
rid=$(jq -r .id "$W/out")
wait_state "$rid" done 60
size=$(jget "/v1/tasks/$rid" .result.size)
check "its result size is known ($size)" grep -qxE '[0-9]+' <<<"$size"
rng() { curl -s -o "$W/part" -w '%{http_code}' -H "Range: $1" "$URL/v1/tasks/$rid/result"; }
check "Range bytes=0-0 gives 1 byte" test "$(rng bytes=0-0):$(stat -c %s "$W/part")" = 206:1
check "Range bytes=-5 gives the last 5" test "$(rng bytes=-5):$(stat -c %s "$W/part")" = 206:5
check "Range past the end: 416" test "$(rng "bytes=$size-")" = 416
check "Range bytes=5-2 is ignored (200)" test "$(rng bytes=5-2):$(stat -c %s "$W/part")" = "200:$size"
check "Range with two ranges is ignored (200)" test "$(rng bytes=0-1,4-5)" = 200
check "Range in another unit is ignored (200)" test "$(rng items=0-1)" = 200
check "Range bytes=0-99999999 is clamped (206, whole file)" test "$(rng bytes=0-99999999):$(stat -c %s "$W/part")" = "206:$size"

# --- Malicious media.
head -c 40000 "$FIX/a.mp4" >"$FIX/nomoov.mp4"
ffmpeg -v error -y -f lavfi -i color=c=red:size=4200x16:rate=1 -frames:v 1 -c:v libx264 "$FIX/wide.mkv"
: >"$FIX/zero.mp4"
post -F "file_data=@$FIX/zero.mp4"
check "zero bytes: 400 empty_file" test "$STATUS:$(code)" = 400:empty_file
for f in nomoov.mp4 wide.mkv; do
    post -F "file_data=@$FIX/$f"
    check "$f accepted (201, got $STATUS)" test "$STATUS" = 201
    id=$(jq -r .id "$W/out")
    wait_state "$id" failed 60
    api GET "/v1/tasks/$id" >"$W/out"
    check "$f fails with a clear error ($STATUS $(jq -c .error "$W/out"))" \
        test "$STATUS:$(jq -r .state "$W/out")" = 200:failed -a -n "$(jq -r '.error.message // empty' "$W/out")"
done
check "absurd dimensions: limits_exceeded" test "$STATUS:$(jq -r .error.code "$W/out")" = 200:limits_exceeded

# --- A full disk: the root is a 48 MiB tmpfs.
if [ "$(id -u)" -eq 0 ]; then
    head -c 80000000 /dev/urandom >"$FIX/huge.mp4"
    post -F "file_data=@$FIX/huge.mp4"
    check "an upload larger than the free space: 507 insufficient_storage" \
        test "$STATUS:$(code)" = 507:insufficient_storage
    st=$(curl -s -o "$W/out" -w '%{http_code}' -H 'Transfer-Encoding: chunked' \
        -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/huge.mp4" "$URL/v1/tasks" || true)
    check "ENOSPC during a chunked upload: 507 or cut ($st)" test "$st" = 507 -o "$st" = 000
    check "the partial upload was removed" test -z "$(ls -A "$ROOT/data/request")"
    post -F "file_data=@$FIX/a.mp4"
    check "after ENOSPC a small upload works again (201)" test "$STATUS" = 201
else
    echo "skipped: the full-disk cases (507 insufficient_storage, ENOSPC mid-upload, the partial removed) need root to mount a small tmpfs as the root; running as uid $(id -u)"
fi

check "the server still answers" alive
check "nothing written outside the root" test -z "$(files_outside_root)"
