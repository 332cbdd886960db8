#!/usr/bin/env bash
# test_callback.sh - callbacks reach a local HTTP receiver (receiver.py) with retries and back-off, for done and failed tasks, and give up on an unreachable one; a 302 is an answer, not a redirect to follow; a receiver that never answers times out after [callback] timeout.
. "$(dirname "$0")/lib.sh"

# wait_callback STAGE ID KEY [SECONDS]: until callback.json of the job says KEY (delivered or
# gave_up) is true.
wait_callback() {
    local f=$ROOT/data/$1/$2/callback.json key=$3 limit=${4:-15} i
    for ((i = 0; i < limit * 10; i++)); do
        [ "$(jq -r ".$key" "$f" 2>/dev/null)" = true ] && return 0
        sleep 0.1
    done
    echo "callback of $2: no $key after ${limit}s: $(cat "$f" 2>/dev/null)" >&2
    return 1
}

# log_count PATTERN: how many lines of the callback daemon's log hold PATTERN.
log_count() {
    grep -c -- "$1" "$TM_LOG/callback.log" || true
}

# wait_log_count PATTERN N [SECONDS]: until the callback daemon's log holds PATTERN N times.
wait_log_count() {
    local i
    for ((i = 0; i < ${3:-10} * 10; i++)); do
        [ "$(log_count "$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    echo "callback.log: '$1' $(log_count "$1") times, not $2, after ${3:-10}s" >&2
    return 1
}

# posts LOG ID: the receiver's lines for one task.
posts() {
    jq -c --arg id "$2" 'select(.headers["X-Taskmill-Task-Id"] == $id)' "$1"
}

# wait_posts LOG ID N [SECONDS]: until the receiver logged N lines for the task.
wait_posts() {
    local i
    for ((i = 0; i < ${4:-10} * 10; i++)); do
        [ "$(posts "$1" "$2" | wc -l)" -ge "$3" ] && return 0
        sleep 0.1
    done
    echo "$1: $(posts "$1" "$2" | wc -l) lines for $2, not $3, after ${4:-10}s" >&2
    return 1
}

# The receivers listen on loopback, which callbacks may reach only when allow-listed.
write_conf "[callback]" "backoff = 1" "max_attempts = 4" "allow_networks = 127.0.0.0/8"
tm_start_all

make_mp4 "$FIX/clip.mp4" 1 160x120
python3 -c 'import random,sys; sys.stdout.buffer.write(random.Random(3).randbytes(20000))' >"$FIX/junk.mp4"

start_receiver flaky 2 # 500, 500, then 200
FLAKY=$RPORT
start_receiver good 0
GOOD=$RPORT
CLOSED=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

a=$(submit "$FIX/clip.mp4" --form-string "callback_url=http://127.0.0.1:$FLAKY/hook?x=1")
b=$(submit "$FIX/junk.mp4" --form-string "callback_url=http://127.0.0.1:$GOOD/failed")
c=$(submit "$FIX/clip.mp4" --form-string "callback_url=http://127.0.0.1:$CLOSED/nobody" --form-string file_name=lonely.mp4)
check "the three tasks are accepted" test -n "$a" -a -n "$b" -a -n "$c"
check "callback_url is in the task object" \
    test "$(curl -s "$URL/v1/tasks/$a" | jq -r .callback_url)" = "http://127.0.0.1:$FLAKY/hook?x=1"

# --- a done task, delivered on the third attempt ----------------------------------------------
check "task A is done" wait_state "$a" "done" 60
check "A's callback is delivered within 15 s" wait_callback "done" "$a" delivered 15
posts "$W/flaky.log" "$a" >"$W/a.posts"
check "A: 3 POSTs for 2 failures ($(wc -l <"$W/a.posts"))" test "$(wc -l <"$W/a.posts")" = 3
check "A: answered 500, 500, 200" test "$(jq -r .status "$W/a.posts" | tr '\n' ' ')" = "500 500 200 "
check "A: every POST went to the URL's path and query" \
    test "$(jq -r .path "$W/a.posts" | sort -u)" = "/hook?x=1"
check "A: X-Taskmill-Attempt counts 1, 2, 3" \
    test "$(jq -r '.headers["X-Taskmill-Attempt"]' "$W/a.posts" | tr '\n' ' ')" = "1 2 3 "
check "A: Content-Type is application/json" \
    test "$(jq -r '.headers["Content-Type"]' "$W/a.posts" | sort -u)" = application/json
check "A: User-Agent is taskmill-callback" \
    bash -c "jq -r '.headers[\"User-Agent\"]' '$W/a.posts' | grep -qx 'taskmill-callback/.*'"
api GET "/v1/tasks/$a" >"$W/a.json"
tail -n 1 "$W/a.posts" | jq .body >"$W/a.body"
check "A: body is the task object with the same id" test "$(jq -r .id "$W/a.body")" = "$a"
check "A: body says state done" test "$(jq -r .state "$W/a.body")" = "done"
check "A: body has result.sha256 of the result" \
    test "$(jq -r .result.sha256 "$W/a.body")" = "$(jq -r .result.sha256 "$W/a.json")"
check "A: the sha256 is 64 hex digits" grep -qxE '[0-9a-f]{64}' <<<"$(jq -r .result.sha256 "$W/a.body")"
check "A: body has the task's file_name, priority and callback_url" \
    test "$(jq -c '[.file_name, .priority, .callback_url, .error]' "$W/a.body")" = "$(jq -c '[.file_name, .priority, .callback_url, .error]' "$W/a.json")"
check "A: every attempt carried the done task" test "$(jq -r '.body.state' "$W/a.posts" | sort -u)" = "done"
# Back-off: backoff x 2^(n-1) seconds after the n-th failure, so about 1 s then 2 s.
gaps=$(jq -r .t "$W/a.posts" | python3 -c 'import sys; t=[float(x) for x in sys.stdin]; print(" ".join("%.2f" % (b-a) for a,b in zip(t,t[1:])))')
check "A: waits about 1 s then 2 s between attempts ($gaps)" \
    python3 -c "import sys; g=[float(x) for x in '$gaps'.split()]; sys.exit(not (len(g)==2 and g[0]>=0.95 and g[1]>=1.95 and g[1]>g[0]))"
cbj=$ROOT/data/done/$a/callback.json
check "A: callback.json has 3 attempts" test "$(jq '.attempts | length' "$cbj")" = 3
check "A: callback.json statuses 500, 500, 200" test "$(jq -c '[.attempts[].status]' "$cbj")" = '[500,500,200]'
check "A: callback.json delivered, not given up, nothing scheduled" \
    test "$(jq -c '[.delivered, .gave_up, .next_attempt_ns]' "$cbj")" = '[true,false,null]'
check "A: callback.json records the url" test "$(jq -r .url "$cbj")" = "http://127.0.0.1:$FLAKY/hook?x=1"
check "A: every attempt has a time" test "$(jq '[.attempts[] | select(.at | type == "string")] | length' "$cbj")" = 3

# --- a failed task -------------------------------------------------------------------------------
check "task B (corrupt input) ends failed" wait_state "$b" failed 60
check "B's callback is delivered" wait_callback failed "$b" delivered 15
posts "$W/good.log" "$b" >"$W/b.posts"
check "B: one POST" test "$(wc -l <"$W/b.posts")" = 1
check "B: to /failed" test "$(jq -r .path "$W/b.posts")" = /failed
check "B: body has the id" test "$(jq -r .body.id "$W/b.posts")" = "$b"
check "B: body says state failed" test "$(jq -r .body.state "$W/b.posts")" = failed
check "B: body has an error code ($(jq -r .body.error.code "$W/b.posts"))" \
    grep -qxE 'input_unreadable|decode_error' <<<"$(jq -r .body.error.code "$W/b.posts")"
check "B: body has an error message" test -n "$(jq -r '.body.error.message // empty' "$W/b.posts")"
check "B: body has no result" test "$(jq -r .body.result "$W/b.posts")" = null
check "B: callback.json in failed/ shows 1 attempt, delivered" \
    test "$(jq -c '[(.attempts | length), .attempts[0].status, .delivered]' "$ROOT/data/failed/$b/callback.json")" = '[1,200,true]'

# --- an unreachable receiver: the task is still done; the callback gives up ------------------
check "task C (unreachable callback) is done" wait_state "$c" "done" 60
check "C's callback gives up within 20 s" wait_callback "done" "$c" gave_up 20
cbj=$ROOT/data/done/$c/callback.json
check "C: 4 attempts recorded (max_attempts)" test "$(jq '.attempts | length' "$cbj")" = 4
check "C: every attempt has status 0 and an error" \
    test "$(jq '[.attempts[] | select(.status == 0 and (.error | type == "string") and (.error | length) > 0)] | length' "$cbj")" = 4
check "C: not delivered, nothing scheduled" test "$(jq -c '[.delivered, .gave_up, .next_attempt_ns]' "$cbj")" = '[false,true,null]'
check "C: task still done with its result" test "$(curl -s "$URL/v1/tasks/$c" | jq -r '.state + " " + .result.file_name')" = "done lonely.mp4"

# --- a restart sends nothing again ---------------------------------------------------------------
# The restart also takes a shorter timeout and fewer attempts for the receivers below. At start
# the daemon reads the owed callbacks from the task index and logs how many callbacks it still owes: every one of them
# would be sent again, so "0 callbacks owed" is the condition, not a pause.
SCANNED='scanned the task index:'
scans=$(log_count "$SCANNED")
check "callback stops cleanly" tm_stop callback
write_conf "[callback]" "backoff = 1" "max_attempts = 2" "timeout = 2" "allow_networks = 127.0.0.0/8"
tm_start callback
check "the restarted callback daemon scanned the task index" wait_log_count "$SCANNED" $((scans + 1)) 10
check "after a restart no finished callback is owed ($(grep -- "$SCANNED" "$TM_LOG/callback.log" | tail -n +$((scans + 1)) | sed 's/.*: //' | sort -u | tr '\n' ' '))" \
    test -z "$(grep -- "$SCANNED" "$TM_LOG/callback.log" | tail -n +$((scans + 1)) | grep -v ': 0 callbacks owed, 0 new$')"
check "after a restart no finished callback is sent again" \
    test "$(cat "$W/flaky.log" "$W/good.log" | wc -l)" = 4
check "C's callback.json unchanged after the restart" test "$(jq '.attempts | length' "$cbj")" = 4

# --- a 302: recorded as the answer, the redirect is not followed -------------------------------
start_receiver landing 0 any # where the Location points: must never be contacted (by any method)
LANDING=$RPORT
start_receiver redirect 0 "redirect=http://127.0.0.1:$LANDING/landed"
REDIRECT=$RPORT
# --- a receiver that accepts the connection and never answers: timeout = 2 ----------------------
start_receiver hang 0 hang
HANG=$RPORT
d=$(submit "$FIX/clip.mp4" --form-string "callback_url=http://127.0.0.1:$REDIRECT/moved")
e=$(submit "$FIX/clip.mp4" --form-string "callback_url=http://127.0.0.1:$HANG/silent")
check "tasks D (302) and E (no answer) are accepted" test -n "$d" -a -n "$e"

check "task D is done" wait_state "$d" done 60
check "D's callback gives up within 15 s (a 302 is not a delivery)" wait_callback done "$d" gave_up 15
cbj=$ROOT/data/done/$d/callback.json
posts "$W/redirect.log" "$d" >"$W/d.posts"
check "D: the first receiver got both attempts ($(wc -l <"$W/d.posts"))" test "$(wc -l <"$W/d.posts")" = 2
check "D: to the URL's path, answered 302" \
    test "$(jq -r '.path + " " + (.status | tostring)' "$W/d.posts" | sort -u)" = "/moved 302"
check "D: the Location's receiver was never contacted" test ! -s "$W/landing.log"
check "D: callback.json records 2 attempts of status 302, without a transport error" \
    test "$(jq -c '[.attempts[] | [.status, .error]]' "$cbj")" = '[[302,null],[302,null]]'
check "D: callback.json not delivered, given up, nothing scheduled, the url unchanged" \
    test "$(jq -c '[.delivered, .gave_up, .next_attempt_ns, .url]' "$cbj")" = "[false,true,null,\"http://127.0.0.1:$REDIRECT/moved\"]"

check "task E is done" wait_state "$e" done 60
# Two attempts of 2 s each and a 1 s back-off between them.
check "E's callback gives up within 20 s" wait_callback done "$e" gave_up 20
cbj=$ROOT/data/done/$e/callback.json
check "E: callback.json records 2 attempts, each status 0 with curl's timeout error ($(jq -c '[.attempts[].error]' "$cbj"))" \
    test "$(jq '[.attempts[] | select(.status == 0 and (.error | test("timed out"; "i")))] | length' "$cbj")" = 2
check "E: not delivered, given up, nothing scheduled" \
    test "$(jq -c '[.delivered, .gave_up, .next_attempt_ns]' "$cbj")" = '[false,true,null]'
# The receiver writes its line when it sees the client hang up, which is about when the callback
# records the attempt: wait for it.
check "E: the receiver saw both attempts" wait_posts "$W/hang.log" "$e" 2 5
posts "$W/hang.log" "$e" >"$W/e.posts"
check "E: and no more ($(wc -l <"$W/e.posts"))" test "$(wc -l <"$W/e.posts")" = 2
held=$(jq -r .held "$W/e.posts" | tr '\n' ' ')
check "E: each connection was held about 2 s, the timeout, before the callback hung up ($held)" \
    python3 -c "import sys; h=[float(x) for x in '$held'.split()]; sys.exit(not (len(h)==2 and all(1.9 <= x <= 4 for x in h)))"
gaps=$(jq -r .t "$W/e.posts" | python3 -c 'import sys; t=[float(x) for x in sys.stdin]; print(" ".join("%.2f" % (b-a) for a,b in zip(t,t[1:])))')
check "E: the second attempt came a timeout and a back-off after the first ($gaps s)" \
    python3 -c "import sys; g=[float(x) for x in '$gaps'.split()]; sys.exit(not (len(g)==1 and 2.9 <= g[0] <= 6))"
check "E: the task is still done with its result" test "$(curl -s "$URL/v1/tasks/$e" | jq -r .state)" = done
# Seconds later, still nothing sent again to the receivers of A and B.
check "still no finished callback sent again" test "$(cat "$W/flaky.log" "$W/good.log" | wc -l)" = 4

stop_receivers
check "nothing written outside the root" test -z "$(files_outside_root)"
