#!/usr/bin/env bash
# test_ipc.sh - the queue's socket as a hostile or confused peer sees it: a malformed datagram,
# an unknown type, a message before hello, a message the peer's role may not send (a converter
# deleting a task, rest reporting work) each get an error reply and a log line, and the queue
# keeps serving. Also the socket's mode (0660) and the data folders' (0750), as
# docs/security.md states, and every client waiting to delete a running task is answered.
. "$(dirname "$0")/lib.sh"

write_conf
tm_start_all
SOCK=$ROOT/run/queue.sock
peer() { python3 "$TASKMILL_SRC/tests/it/ipc_peer.py" "$SOCK" "$@"; }
reply_code() { grep '^{' <<<"$1" | jq -r 'select(.type == "error") | .code' | head -1; }
make_mp4 "$FIX/a.mp4" 1
id=$(submit "$FIX/a.mp4")

out=$(peer '@hex:00ff7b7b')
check "a malformed datagram: error bad_message ($(reply_code "$out"))" test "$(reply_code "$out")" = bad_message
out=$(peer '{"v":1,"type":"job.delete","rid":3,"id":"'"$id"'"}')
check "job.delete before hello: error forbidden" test "$(reply_code "$out")" = forbidden
out=$(peer '{"v":1,"type":"hello","rid":1,"role":"convert","workers":0}' \
    '{"v":1,"type":"job.delete","rid":2,"id":"'"$id"'"}')
check "a converter may not delete a task: error forbidden" test "$(reply_code "$out")" = forbidden
out=$(peer '{"v":1,"type":"hello","rid":0,"role":"rest"}' \
    '{"v":1,"type":"work.done","rid":2,"id":"'"$id"'","outcome":"done"}')
check "rest may not report work: error forbidden" test "$(reply_code "$out")" = forbidden
out=$(peer '{"v":1,"type":"hello","rid":1,"role":"rest"}' '{"v":1,"type":"hello","rid":2,"role":"convert"}')
check "a second hello: error forbidden" test "$(reply_code "$out")" = forbidden
out=$(peer '{"v":1,"type":"hello","rid":1,"role":"queue"}')
check "a peer claiming to be the queue: error bad_request" test "$(reply_code "$out")" = bad_request
out=$(peer '{"v":1,"type":"hello","rid":1,"role":"convert","workers":99999}')
check "hello with workers out of range: error bad_request with a message" \
    test "$(reply_code "$out"):$(jq -r .message <<<"$out" | grep -c 'workers')" = bad_request:1
out=$(peer '{"v":1,"type":"hello","rid":0,"role":"rest"}' '{"v":1,"type":"no.such","rid":5}')
check "an unknown type: error unknown_type" test "$(reply_code "$out")" = unknown_type
out=$(peer '{"v":1,"type":"hello","rid":0,"role":"rest"}' '{"v":1,"type":"job.delete","rid":6,"id":"x","extra":1}')
check "an unknown field: error bad_request" test "$(reply_code "$out")" = bad_request
# A peer-chosen string with a newline and a forged priority is escaped in the log: one line.
peer '{"v":1,"type":"hello","rid":0,"role":"rest"}' '{"v":1,"type":"x\n<0>forged","rid":7}' >/dev/null
check "a newline in a logged string is escaped, not a new entry" \
    grep -qF "unknown message type 'x\x0a<0>forged'" "$TM_LOG/queue.log"
check "no log line starts with the forged priority" bash -c "! grep -q '^<0>forged' '$TM_LOG/queue.log'"
for what in "malformed message" "may not send 'job.delete'" "may not send 'work.done'" \
    "unknown message type" "bad hello"; do
    check "the queue logged: $what" grep -q "$what" "$TM_LOG/queue.log"
done
check "the task is untouched by the refused delete" wait_state "$id" done 60
api GET /healthz >/dev/null
check "the queue keeps serving (healthz 200)" test "$STATUS" = 200
check "queue.sock is mode 0660" test "$(stat -c %a "$SOCK")" = 660
check "data/ and its stage folders are mode 0750" \
    test "$(stat -c %a "$ROOT/data" "$ROOT"/data/{request,pending,in_progress,done,failed,trash} | sort -u)" = 750

# Three clients delete one running task at once: every one is answered, at once. The
# conversion child is stopped (SIGSTOP) until the queue has deletions waiting together, so the
# check does not race the child's end. rest blocks a thread per waiting DELETE, and a thread may
# have taken two connections before it blocked: the one behind it comes after the task is gone
# (404). So the first two start one after the other, each once the one before is held (a blocked
# thread accepts no connection; one burst of three could all land on one thread under load), and
# the third at once. Every deletion the queue held must get 204.
make_mp4 "$FIX/long.mp4" 20 640x360
id=$(submit "$FIX/long.mp4" -F 'params={"preset":"medium"}')
wait_state "$id" in_progress 30
child=""
for _ in $(seq 100); do
    child=$(pgrep -P "${TM_PID[convert]}" | head -n 1 || true)
    [ -n "$child" ] && break
    sleep 0.1
done
check "a conversion child runs" test -n "$child"
kill -STOP "$child"
held() { grep -c "$id: delete requested while it runs" "$TM_LOG/queue.log" || true; }
held_at_least() { [ "$(held)" -ge "$1" ]; }
pids=()
for i in 1 2 3; do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -X DELETE "$URL/v1/tasks/$id" >"$W/del$i" &
    pids+=($!)
    [ "$i" = 3 ] || check "DELETE $i is held by the queue" wait_for 10 held_at_least "$i"
done
check "the queue holds two or more deletions while the child is stopped" \
    wait_for 10 held_at_least 2
kill -CONT "$child"
wait "${pids[@]}"
for i in 1 2 3; do
    read -r st t <"$W/del$i"
    check "concurrent DELETE $i answered 204 or 404 in ${t}s" \
        bash -c "[ '$st' = 204 ] || [ '$st' = 404 ]; awk 'BEGIN {exit !($t < 10)}'"
done
n204=$(cat "$W"/del? | grep -c '^204' || true)
check "every held deletion got 204 ($n204 of $(held) held)" test "$n204" -ge "$(held)"
api GET "/v1/tasks/$id" >/dev/null
check "the task is gone" test "$STATUS" = 404
