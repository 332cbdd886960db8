#!/usr/bin/env bash
# test_admin.sh - scheduling, batches, contexts, the workers' view and history, drain/resume,
# and taskmillctl, through the real daemons: priority aliases; a delayed task not starting
# early and starting within 1 s of run_at; context and batch filters; a batch's counts and its
# callback firing once; GET /v1/workers during a conversion; the history with rusage figures
# after a restart; drain and resume; the admin-only endpoints refused to a user token; every
# taskmillctl command.
. "$(dirname "$0")/lib.sh"

start_receiver recv 0 any
HOOK=http://127.0.0.1:$RPORT

tok() { openssl rand -hex 32; }
hash() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
USER_TOKEN=$(tok) ADMIN_TOKEN=$(tok)
printf 'user user %s\nroot admin %s\n' "$(hash "$USER_TOKEN")" "$(hash "$ADMIN_TOKEN")" >"$T/tokens"
chmod 600 "$T/tokens"
write_conf "[convert]" "workers = 1" "[callback]" "allow_networks = 127.0.0.0/8" "backoff = 1" \
    "[rest]" "tokens_file = $T/tokens" "[ctl]" "token = $ADMIN_TOKEN" \
    "[type.echo]" "kind = exec" "command = /usr/bin/printf %s {word}" "input = none" \
    "param.word = string:100" \
    "[type.nap]" "kind = exec" "command = /bin/sleep {seconds}" "input = none" \
    "param.seconds = int:0..30 default 1"
tm_start_all
make_mp4 "$FIX/a.mp4" 10 320x240

# lib.sh's api and wait_state ask as the user; admin as the admin.
CURL_OPTS=(-H "Authorization: Bearer $USER_TOKEN")
admin() { local CURL_OPTS=(-H "Authorization: Bearer $ADMIN_TOKEN"); api "$@"; }
state_of() { api GET "/v1/tasks/$1" | jq -r .state; }
ctl() { "$TASKMILL_BUILD/taskmillctl" --config "$TM_CONF" "$@"; }
hits() { grep -c -- "$1" "$W/recv.log" || true; } # PATTERN: lines of the receiver's log

# --- the admin's endpoints are the admin's ---
for path in /v1/workers /v1/workers/history /v1/admin/check; do
    api GET "$path" >"$W/out"
    check "GET $path as a user: 403 admin_only" \
        test "$STATUS:$(jq -r .error.code "$W/out")" = "403:admin_only"
done
api POST /v1/admin/drain >"$W/out"
check "POST /v1/admin/drain as a user: 403" test "$STATUS" = 403
check "  and nothing drains" test "$(admin GET /v1/status | jq .draining)" = false

# --- drain: nothing starts; resume: it does ---
admin POST /v1/admin/drain >"$W/out"
check "drain as the admin: 200, draining" test "$STATUS:$(jq .draining "$W/out")" = "200:true"
check "  /v1/status says draining" test "$(api GET /v1/status | jq .draining)" = true
check "  data/.draining records it" test -e "$ROOT/data/.draining"
json_post '{"task_type":"echo","params":{"word":"drained"}}' >"$W/out"
held=$(jq -r .id "$W/out")
sleep 1 # a task would have started within this second if draining let it
check "  a task submitted while draining stays pending" test "$(state_of "$held")" = pending
check "  the idle slots say draining" \
    test "$(admin GET /v1/workers | jq -r '[.workers[] | select(.host != null) | .state] | unique | join(",")')" = draining
tm_stop queue
tm_start queue
check "  draining survives a restart of the queue" test "$(admin GET /v1/status | jq .draining)" = true
admin POST /v1/admin/resume >"$W/out"
check "resume: 200, not draining" test "$STATUS:$(jq .draining "$W/out")" = "200:false"
check "  the held task runs" wait_state "$held" done 20

# --- priority aliases ---
admin POST /v1/admin/drain >/dev/null
ids=()
for p in low normal high 900 250; do
    json_post "{\"task_type\":\"echo\",\"priority\":\"$p\",\"params\":{\"word\":\"$p\"}}" >"$W/out"
    check "priority $p: 201" test "$STATUS" = 201
    ids+=("$(jq -r .id "$W/out")")
done
check "the aliases are 250, 500, 750" test "$(for i in "${ids[@]}"; do
    api GET "/v1/tasks/$i" | jq .priority; done | tr '\n' ' ')" = "250 500 750 900 250 "
json_post '{"task_type":"echo","priority":"urgent","params":{"word":"x"}}' >"$W/out"
check "an unknown alias: 400 bad_priority" test "$STATUS:$(jq -r .error.code "$W/out")" = "400:bad_priority"
admin POST /v1/admin/resume >/dev/null
for i in "${ids[@]}"; do wait_state "$i" done 20 || true; done
order=$(for i in "${ids[@]}"; do
    api GET "/v1/tasks/$i" | jq -r '.started_at + " " + (.priority | tostring)'; done | sort | cut -d' ' -f2 | tr '\n' ' ')
check "they ran highest first, FIFO within a priority ($order)" test "$order" = "900 750 500 250 250 "

# --- delayed tasks ---
at=$(date -u -d '+3 seconds' +%Y-%m-%dT%H:%M:%S.%3NZ)
json_post "{\"task_type\":\"echo\",\"params\":{\"word\":\"later\"},\"run_at\":\"$at\"}" >"$W/out"
check "run_at: 201, state scheduled" test "$STATUS:$(jq -r .state "$W/out")" = "201:scheduled"
late=$(jq -r .id "$W/out")
check "  its run_at is shown" test "$(jq -r .run_at "$W/out")" = "${at%Z}000Z"
check "  listed with state=scheduled" \
    test "$(api GET '/v1/tasks?state=scheduled' | jq -r '.tasks[].id')" = "$late"
check "  not with state=pending" test "$(api GET '/v1/tasks?state=pending' | jq '.tasks | length')" = 0
check "  /v1/status counts it as scheduled" test "$(api GET /v1/status | jq .scheduled)" = 1
json_post '{"task_type":"echo","params":{"word":"soon"},"delay_seconds":2}' >"$W/out"
soon=$(jq -r .id "$W/out")
check "delay_seconds: scheduled" test "$(jq -r .state "$W/out")" = scheduled
check "run_at's task started within 1 s of run_at, not before" wait_state "$late" done 10
started=$(api GET "/v1/tasks/$late" | jq -r .started_at)
check "  ($started vs $at)" gap_between "$at" "$started" 0 1
check "delay_seconds' task done too" wait_state "$soon" done 10
json_post '{"task_type":"echo","params":{"word":"x"},"run_at":"tomorrow"}' >"$W/out"
check "a run_at that is not RFC 3339: 400 bad_run_at" \
    test "$STATUS:$(jq -r .error.code "$W/out")" = "400:bad_run_at"

# --- context ---
json_post '{"task_type":"echo","params":{"word":"c1"},"context":"invoice 42"}' >"$W/out"
check "context: 201, shown" test "$STATUS:$(jq -r .context "$W/out")" = "201:invoice 42"
c1=$(jq -r .id "$W/out")
check "GET /v1/tasks?context= finds only it" \
    test "$(api GET '/v1/tasks?context=invoice%2042' | jq -r '[.tasks[].id] | join(",")')" = "$c1"
json_post "{\"task_type\":\"echo\",\"params\":{\"word\":\"x\"},\"context\":\"$(printf 'c%.0s' $(seq 1 201))\"}" >"$W/out"
check "a 201-byte context: 400 bad_context" test "$STATUS:$(jq -r .error.code "$W/out")" = "400:bad_context"

# --- batches ---
api POST /v1/batches -H 'Content-Type: application/json' \
    --data-binary "{\"context\":\"nightly\",\"callback_url\":\"$HOOK/batch\"}" >"$W/out"
check "POST /v1/batches: 201 with an id and a Location" test "$STATUS" = 201
batch=$(jq -r .id "$W/out")
admin POST /v1/admin/drain >/dev/null
bt=()
for w in one two three; do
    json_post "{\"task_type\":\"echo\",\"params\":{\"word\":\"$w\"},\"batch\":\"$batch\"}" >"$W/out"
    bt+=("$(jq -r .id "$W/out")")
done
api POST /v1/tasks -F task_type=nap -F batch="$batch" >"$W/out" # a form joins too
nap=$(jq -r .id "$W/out")
api GET "/v1/batches/$batch" >"$W/out"
check "the batch counts four pending, none finished" \
    test "$(jq -c '[.total, .counts.pending, .finished, .context]' "$W/out")" = '[4,4,false,"nightly"]'
check "GET /v1/tasks?batch= lists its four" test "$(api GET "/v1/tasks?batch=$batch" | jq '.tasks | length')" = 4
admin POST /v1/admin/resume >/dev/null
for i in "${bt[@]}" "$nap"; do wait_state "$i" done 20 || true; done
sleep 1 # time for a callback that must not come: the batch is not closed
check "all its tasks ended, but the batch is open: no callback yet" \
    test "$(hits '"/batch"')" = 0
api POST "/v1/batches/$batch/close" >"$W/out"
check "closing it: 200, sealed" test "$STATUS:$(jq .sealed "$W/out")" = "200:true"
for _ in $(seq 1 100); do grep -q '"/batch"' "$W/recv.log" && break; sleep 0.05; done
check "the batch callback fired" grep -q '"/batch"' "$W/recv.log"
check "  with the batch's counts" test "$(grep '"/batch"' "$W/recv.log" | head -1 |
    jq -c '[.body.id, .body.total, .body.counts.done, .body.finished]')" = "[\"$batch\",4,4,true]"
json_post "{\"task_type\":\"echo\",\"params\":{\"word\":\"late\"},\"batch\":\"$batch\"}" >"$W/out"
check "a task joining a sealed batch: 409 batch_sealed" \
    test "$STATUS:$(jq -r .error.code "$W/out")" = "409:batch_sealed"
tm_stop callback
tm_start callback
for _ in $(seq 1 100); do grep -q 'scanned the task index' "$TM_LOG/callback.log" && break; sleep 0.05; done
sleep 0.5 # a second delivery would go out at once after the scan
check "the batch callback fired once, even across a restart" test "$(hits '"/batch"')" = 1
check "the batch shows its delivered callback" \
    test "$(api GET "/v1/batches/$batch" | jq -c '[.finished, .callback.delivered, .callback.attempts]')" = '[true,true,1]'
api POST /v1/batches -H 'Content-Type: application/json' --data-binary \
    "{\"size\":2,\"callback_done\":{\"type\":\"http\",\"url\":\"$HOOK/sized\",\"method\":\"GET\"}}" >"$W/out"
sized=$(jq -r .id "$W/out")
# naps of a second: the batch is full (sealed) with its second task, but finished only once
# both have ended
sz=()
for _ in a b; do
    json_post "{\"task_type\":\"nap\",\"batch\":\"$sized\"}" >"$W/out"
    sz+=("$(jq -r .id "$W/out")")
done
for _ in $(seq 1 200); do grep -q '"/sized' "$W/recv.log" && break; sleep 0.05; done
last_end=$(for i in "${sz[@]}"; do api GET "/v1/tasks/$i" | jq -r .finished_at; done | sort | tail -n 1)
check "  its callback came after both its tasks ended ($last_end)" \
    gap_between "$last_end" "$(grep '"/sized' "$W/recv.log" | head -n 1 | jq .t)" 0 3600
check "a batch of size 2 finishes with its second task, GET callback_done with the id" \
    test "$(grep '"/sized' "$W/recv.log" | jq -r '.method + " " + .path')" = "GET /sized?batch_id=$sized&state=finished"
api GET /v1/batches/00000000-0000-4000-8000-000000000000 >"$W/out"
check "no such batch: 404 batch_not_found" test "$STATUS:$(jq -r .error.code "$W/out")" = "404:batch_not_found"
json_post '{"task_type":"echo","params":{"word":"x"},"batch":"00000000-0000-4000-8000-000000000000"}' >"$W/out"
check "joining no batch: 404 batch_not_found" test "$STATUS:$(jq -r .error.code "$W/out")" = "404:batch_not_found"

# --- a task's callback_done with GET ---
json_post "{\"task_type\":\"echo\",\"params\":{\"word\":\"g\"},\"callback_done\":{\"type\":\"http\",\"url\":\"$HOOK/task?x=1\",\"method\":\"GET\"}}" >"$W/out"
gid=$(jq -r .id "$W/out")
for _ in $(seq 1 100); do grep -q '"/task?' "$W/recv.log" && break; sleep 0.05; done
check "callback_done GET sends the id and state as query parameters" \
    test "$(grep '"/task?' "$W/recv.log" | jq -r '.method + " " + .path')" = "GET /task?x=1&task_id=$gid&state=done"
check "the task shows its callback's delivery" \
    test "$(api GET "/v1/tasks/$gid" | jq -c '[.callback.method, .callback.attempts, .callback.last_status, (.callback.delivered_at != null)]')" = '["GET",1,200,true]'

# --- the workers during a conversion ---
# preset slow: a conversion that lasts a few seconds even on a fast machine
id=$(curl -s -H "Authorization: Bearer $USER_TOKEN" -F task_type=convert_video_to_libx265 \
    -F 'params={"preset":"slow"}' -F "file_data=@$FIX/a.mp4" "$URL/v1/tasks" | jq -r .id)
wait_state "$id" in_progress 20
for _ in $(seq 1 50); do
    admin GET /v1/workers >"$W/workers"
    jq -e --arg id "$id" '.workers | any(.task_id == $id and .rss_bytes > 0 and .progress > 0)' "$W/workers" >/dev/null && break
    sleep 0.2
done
check "GET /v1/workers shows the conversion's slot with pid, progress, rss and cpu" jq -e --arg id "$id" \
    '.workers | map(select(.task_id == $id))[0] | .state == "busy" and .pid > 0 and
     .task_type == "convert_video_to_libx265" and .progress > 0 and .rss_bytes > 0 and
     (.cpu_seconds | type) == "number" and (.since | type) == "string"' "$W/workers"
check "  and the idle http slots of the callback daemon" \
    jq -e '[.workers[] | select(.state == "idle")] | length >= 4' "$W/workers"
ctl workers >"$W/ctl"
check "taskmillctl workers lists it" grep -q "$id" "$W/ctl"
wait_state "$id" done 180

# --- the history survives a restart ---
tm_stop_all
tm_start_all
admin GET '/v1/workers/history?limit=3' >"$W/out"
check "GET /v1/workers/history after a restart: 200, newest first" \
    test "$STATUS:$(jq -r '.attempts[0].task_id' "$W/out")" = "200:$id"
check "  with the conversion's rusage" jq -e '.attempts[0] | .outcome == "done" and
    .cpu_seconds > 0 and .max_rss_bytes > 1000000 and .wall_seconds > 0 and .slot == 0' "$W/out"
check "  limited to 3" test "$(jq '.attempts | length' "$W/out")" = 3
admin GET '/v1/workers/history?limit=0' >/dev/null
check "  limit=0: 400" test "$STATUS" = 400
check "the task's own history has the attempt" \
    test "$(api GET "/v1/tasks/$id" | jq '.history | length')" = 1

# --- taskmillctl ---
ctl status >"$W/ctl"
check "taskmillctl status" grep -q '^draining *false' "$W/ctl"
ctl history --limit 2 >"$W/ctl"
newest=$(admin GET '/v1/workers/history?limit=1' | jq -r '.attempts[0].task_id')
check "taskmillctl history: a header and the 2 newest attempts, the newest first ($newest)" \
    bash -c "[ \$(wc -l <'$W/ctl') = 3 ] && sed -n 2p '$W/ctl' | grep -q -- '$newest'"
ctl show "$id" >"$W/ctl"
check "taskmillctl show" grep -q "attempt 1: done" "$W/ctl"
ctl list --context 'invoice 42' >"$W/ctl"
check "taskmillctl list --context" test "$(grep -c "$c1" "$W/ctl")" = 1
json_post '{"task_type":"nap","params":{"seconds":0}}' >/dev/null
ctl drain >/dev/null
check "taskmillctl drain" test "$(api GET /v1/status | jq .draining)" = true
ctl resume >/dev/null
check "taskmillctl resume" test "$(api GET /v1/status | jq .draining)" = false
ctl check >"$W/ctl"
check "taskmillctl check: consistent" grep -q '^consistent' "$W/ctl"
mkdir "$ROOT/data/pending/not-a-task"
check "  a stray folder makes it fail, named" bash -c "! '$TASKMILL_BUILD/taskmillctl' --config '$TM_CONF' check >'$W/ctl' && grep -q 'pending/not-a-task' '$W/ctl'"
rmdir "$ROOT/data/pending/not-a-task"
json_post '{"task_type":"echo","params":{"word":"bye"}}' >"$W/out"
bye=$(jq -r .id "$W/out")
wait_state "$bye" done 10
ctl cancel "$bye" >/dev/null
check "taskmillctl cancel" test "$(api GET "/v1/tasks/$bye" >/dev/null; echo "$STATUS")" = 404
n_done=$(api GET '/v1/tasks?state=done&limit=1000' | jq '.tasks | length')
ctl purge --older-than 1h >"$W/ctl"
check "taskmillctl purge --older-than 1h deletes nothing recent" grep -q '^deleted 0 tasks' "$W/ctl"
ctl purge --older-than 0 --state done >"$W/ctl"
check "taskmillctl purge --older-than 0 --state done deletes the $n_done done tasks" \
    grep -q "^deleted $n_done tasks" "$W/ctl"
check "  and only those" test "$(api GET '/v1/tasks?state=done' | jq '.tasks | length')" = 0
check "taskmillctl without a token: refused" bash -c "TASKMILL_TOKEN=$USER_TOKEN '$TASKMILL_BUILD/taskmillctl' --config '$TM_CONF' workers 2>&1 | grep -q admin_only"
