#!/usr/bin/env bash
# test_lifecycle.sh - signals at awkward moments, outside systemd: SIGTERM to rest mid-upload
# (partial removed, nothing queued), SIGTERM to convert mid-encode (partial removed, task back to
# pending, not an attempt), a stalled encoder (SIGSTOP) killed by the pool's stall check and
# retried, a second queue refused by the queue lock, init restarted under a running queue
# leaving live jobs alone, kill -9 of the queue mid-conversion counted as an interruption, and
# the task index mended at the queue's start after it was deleted, damaged or outrun by hand.
. "$(dirname "$0")/lib.sh"

write_conf "stall_timeout = 5" "max_attempts = 3"
tm_start_all
make_mp4 "$FIX/long.mp4" 10 1280x720
head -c 20000000 /dev/urandom >"$FIX/big.mp4"

# SIGTERM to rest while an upload streams in.
curl -s -o /dev/null --limit-rate 2M -F task_type=convert_video_to_libx265 \
    -F file_data=@"$FIX/big.mp4" "$URL/v1/tasks" &
curlpid=$!
for _ in $(seq 50); do
    [ -n "$(ls -A "$ROOT/data/request")" ] && break
    sleep 0.1
done
check "an upload is streaming into request/.tmp-*" ls -d "$ROOT"/data/request/.tmp-*
tm_stop rest
rc=0
wait $curlpid || rc=$?
check "the client saw an error or a closed connection (curl exit $rc)" test $rc -ne 0
check "the partial upload is gone" test -z "$(ls -A "$ROOT/data/request")"
check "nothing half-uploaded was queued" test -z "$(ls -A "$ROOT/data/pending")"
tm_start rest

# kill -9 of rest: mid-upload it leaves request/.tmp-<id>; between publishing and telling the
# queue it leaves a published request/<id> the running queue never heard of. The next rest
# start mends both. The second state is made by hand: a job published while the queue was
# down, held aside while the queue starts, put back.
make_mp4 "$FIX/small.mp4" 1
tm_stop queue
untold=$(submit "$FIX/small.mp4")
mv "$ROOT/data/request/$untold" "$W/held"
tm_start queue
mv "$W/held" "$ROOT/data/request/$untold"
curl -s -o /dev/null --limit-rate 2M -F task_type=convert_video_to_libx265 \
    -F file_data=@"$FIX/big.mp4" "$URL/v1/tasks" &
curlpid=$!
for _ in $(seq 100); do
    [ -n "$(ls -d "$ROOT"/data/request/.tmp-* 2>/dev/null)" ] && break
    sleep 0.1
done
kill -KILL "${TM_PID[rest]}"
wait "${TM_PID[rest]}" || true
unset "TM_PID[rest]"
wait $curlpid || true
check "the killed rest left its upload in request/.tmp-*" ls -d "$ROOT"/data/request/.tmp-*
check "and the untold job sits in request/" test -d "$ROOT/data/request/$untold"
tm_start rest
check "the next rest removed the dead upload" test -z "$(ls -d "$ROOT"/data/request/.tmp-* 2>/dev/null)"
check "and said so" grep -q "an upload a previous rest left unfinished" "$TM_LOG/rest.log"
check "the untold job was told to the queue and converted" wait_state "$untold" done 60

# SIGTERM to convert mid-encode.
id=$(submit "$FIX/long.mp4" -F 'params={"preset":"medium"}')
for _ in $(seq 100); do
    [ -e "$ROOT/data/in_progress/$id/output.mp4.partial" ] && break
    sleep 0.1
done
check "encoding: partial output present" test -e "$ROOT/data/in_progress/$id/output.mp4.partial"
tm_stop convert
check "after SIGTERM the task is pending" test -d "$ROOT/data/pending/$id"
check "after SIGTERM the partial is gone" test -z "$(find "$ROOT/data" -name '*.partial')"
check "interruptions are counted apart from attempts ($(jq -c '[.attempts, .interruptions]' "$ROOT/data/pending/$id/claim.json"))" \
    test "$(jq -c '[.attempts, .interruptions]' "$ROOT/data/pending/$id/claim.json")" = "[0,1]"
check "the convert log says it handed the job back" grep -q "$id: interrupted" "$TM_LOG/convert.log"

# A stalled encoder: freeze the child; the pool kills it after stall_timeout and it is retried.
tm_start convert
for _ in $(seq 100); do
    child=$(pgrep -P "${TM_PID[convert]}" || true)
    [ -n "$child" ] && break
    sleep 0.1
done
check "a conversion child runs" test -n "$child"
kill -STOP "$child"
wait_state "$id" done 120
check "the stalled child was killed" grep -q "$id: no progress for 5 s" "$TM_LOG/convert.log"
check "the stall counted as an attempt, then it completed" \
    test "$(jq -r .attempts "$ROOT/data/done/$id/claim.json")" = 2

# Only one queue per root; init under a running queue leaves live jobs alone.
check "a second queue refuses to start" bash -c "! '$TM_BIN/taskmill-queue' --config '$TM_CONF' 2>'$W/q2.log'"
check "it says why" grep -q "another taskmill-queue runs" "$W/q2.log"
id2=$(submit "$FIX/long.mp4" -F 'params={"preset":"medium"}')
wait_state "$id2" in_progress 30
tm_stop init
tm_start init
check "init skipped its reset under a running queue" grep -q "cleanup skipped: the queue is running" "$TM_LOG/init.log"
check "the running job was left in place" test -d "$ROOT/data/in_progress/$id2"
# kill -9 of the queue, twice, while the job converts: two interruptions, not attempts (so a
# task is never failed worker_crashed because its queue died).
for k in 1 2; do
    for _ in $(seq 300); do
        [ -e "$ROOT/data/in_progress/$id2/output.mp4.partial" ] && break
        sleep 0.1
    done
    check "queue kill $k: the job is converting" test -e "$ROOT/data/in_progress/$id2/output.mp4.partial"
    kill -KILL "${TM_PID[queue]}"
    wait "${TM_PID[queue]}" || true
    unset "TM_PID[queue]"
    tm_start queue
done
wait_state "$id2" done 120
check "two queue kills: attempts 1, interruptions 2 ($(jq -c '[.attempts, .interruptions]' "$ROOT/data/done/$id2/claim.json"))" \
    test "$(jq -c '[.attempts, .interruptions]' "$ROOT/data/done/$id2/claim.json")" = "[1,2]"
check "nothing partial or temporary left" test -z "$(find "$ROOT/data" -name '*.partial' -o -name '.tmp*')"

# The task index is a cache of the folders: deleted, damaged, or behind an admin's hand in data/
# while the queue was stopped, the queue's next start mends it, and lists (read by a rest that
# kept running, with the old index open) show what the folders say.
list_ids() { jget "/v1/tasks?state=$1&limit=1000" '.tasks[].id' | sort | tr '\n' ' '; }
check "before: done lists the three finished tasks" test "$(list_ids done)" = "$(printf '%s\n' "$untold" "$id" "$id2" | sort | tr '\n' ' ')"
tm_stop queue
rm -r "$ROOT/data/done/$untold"
tm_start queue
check "a task removed by hand: done lists the other two" \
    test "$(list_ids done)" = "$(printf '%s\n' "$id" "$id2" | sort | tr '\n' ' ')"
tm_stop queue
rm -r "$ROOT/data/index"
mv "$ROOT/data/done/$id2" "$ROOT/data/failed/$id2"
tm_start queue
check "index deleted, a task moved by hand: failed lists it" test "$(list_ids failed)" = "$id2 "
check "and done the one left" test "$(list_ids done)" = "$id "
tm_stop queue
head -c 8192 /dev/urandom >"$ROOT/data/index/tasks.db"
rm -f "$ROOT/data/index/tasks.db-wal" "$ROOT/data/index/tasks.db-shm"
tm_start queue
check "index damaged: failed and done list the same" test "$(list_ids failed)/$(list_ids done)" = "$id2 /$id "
check "the queue said it rebuilt the damaged index" grep -q "tasks.db is damaged: rebuilding it" "$TM_LOG/queue.log"
