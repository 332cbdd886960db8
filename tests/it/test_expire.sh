#!/usr/bin/env bash
# test_expire.sh - results nobody fetches are removed after [queue] result_ttl, done and failed
# alike, and the status counters follow; rest sweeps the idempotency keys of expired tasks but
# keeps those of tasks still waiting, however old; a batch goes once its tasks have expired,
# one with a task left stays.
. "$(dirname "$0")/lib.sh"

write_conf "[queue]" "result_ttl = 8"
tm_start_all
make_mp4 "$FIX/a.mp4" 1
head -c 5000 /dev/urandom >"$FIX/bad.mp4"
api POST /v1/batches -H 'Content-Type: application/json' -d '{"context":"expiring"}' >"$W/batch"
check "a batch for the task to expire (201)" test "$STATUS" = 201
batch=$(jq -r .id "$W/batch")
ok_id=$(submit "$FIX/a.mp4" -F idempotency_key=expire-me -F batch="$batch")
api POST "/v1/batches/$batch/close" >/dev/null
bad_id=$(submit "$FIX/bad.mp4")
wait_state "$ok_id" done 60
wait_state "$bad_id" failed 60
check "status counts one done and one failed" \
    test "$(jget /v1/status '[.done, .failed] | tostring')" = "[1,1]"
gone() { # waits up to 30 s for done/ and failed/ to empty
    local i
    for ((i = 0; i < 300; i++)); do
        [ -z "$(find "$ROOT/data/done" "$ROOT/data/failed" -mindepth 1)" ] && return 0
        sleep 0.1
    done
    return 1
}
check "the finished tasks expire within 30 s" gone
api GET "/v1/tasks/$ok_id" >/dev/null
check "an expired done task is 404" test "$STATUS" = 404
api GET "/v1/tasks/$bad_id" >/dev/null
check "an expired failed task is 404" test "$STATUS" = 404
check "done/ and failed/ are empty" test -z "$(find "$ROOT/data/done" "$ROOT/data/failed" -mindepth 1)"
check "status counts follow" test "$(jget /v1/status '[.done, .failed] | tostring')" = "[0,0]"
check "the queue logged the expiry" grep -q "$ok_id: expired from=done" "$TM_LOG/queue.log"

# sweeps N: waits up to 30 s for rest's Nth "removed ... idempotency keys" log line (written
# after the removal and the folder's fsync).
sweeps() {
    local i
    for ((i = 0; i < 300; i++)); do
        [ "$(grep -cE "removed [0-9]+ idempotency keys of expired tasks" "$TM_LOG/rest.log")" -ge "$1" ] && return 0
        sleep 0.1
    done
    return 1
}
check "rest logged the sweep" sweeps 1
check "the sweep removed the one key" grep -q "removed 1 idempotency keys of expired tasks" "$TM_LOG/rest.log"
check "the expired task's idempotency key was swept" test -z "$(ls -A "$ROOT/data/keys")"
batch_gone() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/batches/$batch")" = 404 ]; }
for _ in $(seq 150); do batch_gone && break; sleep 0.2; done
check "the batch whose task expired was swept (404)" batch_gone
check "  its folder is gone" test ! -e "$ROOT/data/batches/$batch"

# A key older than result_ttl whose task still waits is kept. A sweep logs only what it removed,
# so a canary shows when one has looked at the key late enough: a stale temporary key file
# (what a killed rest leaves) with the key's own mtime, which a sweep removes once it is older
# than result_ttl - exactly when the key is.
tm_stop convert
api POST /v1/batches -H 'Content-Type: application/json' -d '{}' >"$W/batch"
kept=$(jq -r .id "$W/batch")
wait_id=$(submit "$FIX/a.mp4" -F idempotency_key=keep-me -F batch="$kept")
key=$(ls "$ROOT/data/keys")
check "the waiting task has one key file ($key)" test "$(wc -w <<<"$key")" = 1
touch -r "$ROOT/data/keys/$key" "$ROOT/data/keys/.tmp.canary"
check "a sweep ran once the key was older than result_ttl (the canary is gone)" sweeps 2
check "the canary was removed" test ! -e "$ROOT/data/keys/.tmp.canary"
check "a waiting task's old key is kept" test "$(ls -A "$ROOT/data/keys")" = "$key"
# The batch: a second canary, stamped 2 s after the batch was made, is swept only once the batch
# is surely older than result_ttl (file times are whole seconds); batches are swept before keys.
made=$(jq '.created_ns / 1000000000 | floor' "$ROOT/data/batches/$kept/batch.json")
touch -d "@$((made + 2))" "$ROOT/data/keys/.tmp.canary2"
check "a sweep ran once the batch was older than result_ttl (the second canary is gone)" sweeps 3
check "and its batch, with a task still waiting, is kept" test -e "$ROOT/data/batches/$kept/batch.json"
api POST /v1/tasks -F idempotency_key=keep-me -F task_type=convert_video_to_libx265 \
    -F "file_data=@$FIX/a.mp4" >"$W/out"
check "and still answers with its task (200, got $STATUS)" test "$STATUS:$(jq -r .id "$W/out")" = "200:$wait_id"
tm_start convert
wait_state "$wait_id" done 60
