#!/usr/bin/env bash
# test_expire.sh - results nobody fetches are removed after [queue] result_ttl, done and failed
# alike, and the status counters follow; rest sweeps the idempotency keys of expired tasks but
# keeps those of tasks still waiting, however old.
. "$(dirname "$0")/lib.sh"

write_conf "[queue]" "result_ttl = 8"
tm_start_all
make_mp4 "$FIX/a.mp4" 1
head -c 5000 /dev/urandom >"$FIX/bad.mp4"
ok_id=$(submit "$FIX/a.mp4" -F idempotency_key=expire-me)
bad_id=$(submit "$FIX/bad.mp4")
wait_state "$ok_id" done 60
wait_state "$bad_id" failed 60
check "status counts one done and one failed" \
    test "$(curl -s "$URL/v1/status" | jq -c '[.done, .failed]')" = "[1,1]"
for _ in $(seq 300); do
    [ -z "$(find "$ROOT/data/done" "$ROOT/data/failed" -mindepth 1)" ] && break
    sleep 0.1
done
api GET "/v1/tasks/$ok_id" >/dev/null
check "an expired done task is 404" test "$STATUS" = 404
api GET "/v1/tasks/$bad_id" >/dev/null
check "an expired failed task is 404" test "$STATUS" = 404
check "done/ and failed/ are empty" test -z "$(find "$ROOT/data/done" "$ROOT/data/failed" -mindepth 1)"
check "status counts follow" test "$(curl -s "$URL/v1/status" | jq -c '[.done, .failed]')" = "[0,0]"
check "the queue logged the expiry" grep -q "$ok_id: expired from=done" "$TM_LOG/queue.log"

# The log line follows the removal (and the folder's fsync): wait for it, then look.
for _ in $(seq 300); do
    grep -q "removed 1 idempotency keys of expired tasks" "$TM_LOG/rest.log" && break
    sleep 0.1
done
check "the expired task's idempotency key was swept" test -z "$(ls -A "$ROOT/data/keys")"
check "rest logged the sweep" grep -q "removed 1 idempotency keys of expired tasks" "$TM_LOG/rest.log"

# A key older than result_ttl whose task still waits is kept.
tm_stop convert
wait_id=$(submit "$FIX/a.mp4" -F idempotency_key=keep-me)
sleep 11 # longer than result_ttl and a sweep period (result_ttl / 4)
check "a waiting task's old key is kept" test "$(ls "$ROOT/data/keys" | wc -l)" = 1
k=$(curl -s -S -F idempotency_key=keep-me -F task_type=convert_video_to_libx265 \
    -F "file_data=@$FIX/a.mp4" "$URL/v1/tasks" | jq -r .id)
check "and still answers with its task" test "$k" = "$wait_id"
tm_start convert
wait_state "$wait_id" done 60
