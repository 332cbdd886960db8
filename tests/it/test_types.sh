#!/usr/bin/env bash
# test_types.sh - task types an admin defines in the config, through the real daemons: exec
# types (hostile parameter values arrive as single argv elements, a listed exit code is retried
# with back-off, another fails at once with the stderr tail), http types (a local receiver the
# type allows; a host outside allow_hosts and an address outside allow_networks are refused),
# JSON submission, GET /v1/task-types, retry of a failed task without a new upload, and a
# SIGHUP reload of a changed type while a task of it runs.
. "$(dirname "$0")/lib.sh"

start_receiver recv 0 any

types() { # the [type.*] sections; $1 is the description of type "slow"
    cat <<EOF
[type.checksum]
kind = exec
description = sha256 of the uploaded file
command = /usr/bin/sha256sum {input}
input = required
timeout = 30
[type.echo]
kind = exec
description = prints its parameters, one per line
command = /usr/bin/printf '%s|%s|%s\n' {word} {count} {mode}
input = none
param.word = string:200
param.count = int:1..10 default 1
param.mode = enum:fast,slow default fast
[type.flaky]
kind = exec
description = fails with 75 the first time, then works
command = /bin/sh -c 'if [ -e marker ]; then echo second; else : > marker; echo busy >&2; exit 75; fi'
input = none
retry_exit_codes = 75
max_attempts = 3
[type.broken]
kind = exec
description = always exits 3
command = /bin/sh -c 'echo "the disk is on fire" >&2; exit 3'
input = none
max_attempts = 5
[type.slow]
kind = exec
description = $1
command = /bin/sleep {seconds}
input = none
param.seconds = int:0..30
[type.stuck]
kind = exec
description = outlives its timeout
command = /bin/sh -c '/bin/sleep 29'
input = none
timeout = 2
max_attempts = 1
[type.notify]
kind = http
description = posts the parameters to the receiver
url = http://127.0.0.1:$RPORT/hook/{item}
header.Content-Type = application/json
header.X-Item = {item}
body = {params}
param.item = string:50
[type.fetch]
kind = http
description = GETs a status from a host the parameters name
url = http://{host}:$RPORT/status/{code}
allow_hosts = 127.0.0.1
param.host = string:100
param.code = int:100..599 default 200
max_attempts = 2
[type.outside]
kind = http
description = an address the guard refuses
url = http://10.255.255.1/never
EOF
}

conf_with() { # DESCRIPTION_OF_SLOW
    write_conf "[convert]" "workers = 2" "[queue]" "retry_backoff = 1" "[callback]" \
        "allow_networks = 127.0.0.0/8" "$(types "$1")"
}
conf_with "sleeps"
tm_start_all

# --- the list of types ---
api GET /v1/task-types >"$W/types"
check "GET /v1/task-types: 200" test "$STATUS" = 200
check "it lists the built-in video type and the nine admin types" \
    test "$(jq '[.task_types[].name] | sort | join(",")' -r "$W/types")" = \
    "broken,checksum,convert_video_to_libx265,echo,fetch,flaky,notify,outside,slow,stuck"
check "echo's parameters are typed, with defaults" test "$(jq -c '.task_types[] |
    select(.name=="echo") | [.kind, .input, (.parameters | keys)]' "$W/types")" = \
    '["exec","none",["count","mode","word"]]'

# --- exec: hostile values are single argv elements ---
for word in '; rm -rf /' '$(id)' '../../etc/passwd' '`touch /tmp/pwned`' 'a  b > c' '"quoted" \\n'; do
    body=$(jq -cn --arg w "$word" '{task_type: "echo", params: {word: $w, count: 3, mode: "slow"}}')
    json_post "$body" >"$W/out"
    check "echo with '$word': 201" test "$STATUS" = 201
    id=$(jq -r .id "$W/out")
    check "  and done" wait_state "$id" done 30
    api GET "/v1/tasks/$id/result" >"$W/res"
    check "  its stdout is the value, verbatim, as one argument" \
        test "$(cat "$W/res")" = "$word|3|slow"
done
check "no file was made by a hostile value" test ! -e /tmp/pwned
json_post '{"task_type":"echo","params":{"word":"x","count":11}}' >"$W/out"
check "an int out of range: 422 invalid_params" \
    test "$STATUS:$(jq -r .error.code "$W/out")" = "422:invalid_params"
json_post '{"task_type":"echo","params":{"word":"x","mode":"medium"}}' >"$W/out"
check "an enum value not listed: 422 invalid_params" \
    test "$STATUS:$(jq -r .error.code "$W/out")" = "422:invalid_params"
json_post '{"task_type":"echo","params":{"count":2}}' >"$W/out"
check "a required parameter missing: 422 invalid_params naming it" \
    bash -c "[ '$STATUS' = 422 ] && jq -r .error.message '$W/out' | grep -q word"
json_post '{"task_type":"echo","params":{"word":"x","colour":"red"}}' >"$W/out"
check "an unknown parameter: 422 invalid_params" test "$STATUS" = 422
json_post '{"task_type":"checksum"}' >"$W/out"
check "a type that needs a file, sent as JSON: 400 missing_field" \
    test "$STATUS:$(jq -r .error.code "$W/out")" = "400:missing_field"
printf 'hello\n' >"$FIX/hello.txt"
api POST /v1/tasks -F task_type=echo -F "file_data=@$FIX/hello.txt" >"$W/out"
check "a file for a type that takes none: 400 unexpected_file" \
    test "$STATUS:$(jq -r .error.code "$W/out")" = "400:unexpected_file"

# --- the same through the taskmill client ---
tm() { "$TASKMILL_BUILD/taskmill" --server "$URL" "$@"; }
id=$(tm submit --type echo --param 'word=$(id) x' --param count=2 --priority high --context cli)
check "taskmill submit --type without a file: an id" test -n "$id"
check "  taskmill wait: done" tm wait "$id" --timeout 30
check "  with the typed parameters, the priority alias and the context" \
    test "$(curl -s "$URL/v1/tasks/$id" | jq -c '[.params, .priority, .context]')" = \
    '[{"count":2,"mode":"fast","word":"$(id) x"},750,"cli"]'
tm fetch "$id" -o "$W/cli.txt" >/dev/null
check "  taskmill fetch gets its stdout" test "$(cat "$W/cli.txt")" = '$(id) x|2|fast'
check "taskmill submit with neither FILE nor --type: usage error (2)" \
    bash -c "'$TASKMILL_BUILD/taskmill' --server '$URL' submit 2>/dev/null; [ \$? = 2 ]"
tm types >"$W/types.txt"
check "taskmill types shows each type's kind and input" grep -q '^echo (exec, input none)' "$W/types.txt"

# --- exec with an uploaded file ---
api POST /v1/tasks -F task_type=checksum -F "file_data=@$FIX/hello.txt" >"$W/out"
check "checksum of an upload: 201" test "$STATUS" = 201
id=$(jq -r .id "$W/out")
check "  done" wait_state "$id" done 30
curl -s -D "$W/hdr" -o "$W/res" "$URL/v1/tasks/$id/result"
check "  the result is sha256sum's line" \
    test "$(cut -d' ' -f1 "$W/res")" = "$(sha256sum "$FIX/hello.txt" | cut -d' ' -f1)"
check "  served as text/plain" grep -qi '^content-type: text/plain' "$W/hdr"
api GET "/v1/tasks/$id" >"$W/out"
check "  the task records exit_code 0 and one attempt in its history" \
    test "$(jq -c '[.result.exit_code, .attempts, (.history | length), .history[0].outcome]' \
        "$W/out")" = '[0,1,1,"done"]'
check "  the attempt has the child's rusage" \
    jq -e '.history[0] | (.cpu_seconds >= 0) and (.max_rss_bytes > 0) and (.wall_seconds > 0)
        and (.pid > 0) and (.host | length > 0)' "$W/out"

# --- transient and permanent failures ---
json_post '{"task_type":"flaky"}' >"$W/out"
flaky=$(jq -r .id "$W/out")
json_post '{"task_type":"broken"}' >"$W/out"
broken=$(jq -r .id "$W/out")
check "flaky: done after a retry" wait_state "$flaky" done 30
api GET "/v1/tasks/$flaky" >"$W/out"
got=$(jq -c '[.attempts, [.history[].outcome], .last_error.code]' "$W/out")
check "  two attempts, the first a retry with exit status 75 ($got)" \
    test "$got" = '[2,["retry","done"],"exit_status"]'
check "  the second started at least the back-off (1 s) after the first ended" \
    gap_between "$(jq -r '.history[0].finished_at' "$W/out")" "$(jq -r '.history[1].started_at' "$W/out")" 0.9 3600
check "  its result is the second run's stdout" \
    test "$(curl -s "$URL/v1/tasks/$flaky/result")" = second
check "broken: failed" wait_state "$broken" failed 30
api GET "/v1/tasks/$broken" >"$W/out"
check "  at once: one attempt of its five" test "$(jq .attempts "$W/out")" = 1
check "  the error has the exit status and the stderr tail" \
    bash -c "jq -r '.error.code + \" \" + .error.message' '$W/out' | grep -q 'exit_status.*exited 3.*the disk is on fire'"

# --- a program that outlives its timeout: it is killed with all it started ---
json_post '{"task_type":"stuck"}' >"$W/out"
stuck=$(jq -r .id "$W/out")
check "stuck: failed after its 2 s timeout" wait_state "$stuck" failed 30
check "  with code timeout" test "$(api GET "/v1/tasks/$stuck" | jq -r .error.code)" = timeout
check "  and nothing it started runs on (no sleep 29 left)" \
    wait_for 5 bash -c '! pgrep -f "^/bin/sleep 29\$" >/dev/null'

# --- http: a local receiver the type allows ---
json_post '{"task_type":"notify","params":{"item":"a b/c?d"}}' >"$W/out"
check "notify: 201" test "$STATUS" = 201
id=$(jq -r .id "$W/out")
check "  done" wait_state "$id" done 30
line=$(grep '"path": "/hook/' "$W/recv.log" | tail -n 1)
check "  the receiver got POST /hook/ with the value percent-encoded in the path" \
    test "$(jq -r '.method + " " + .path' <<<"$line")" = "POST /hook/a%20b%2Fc%3Fd"
check "  the body is the parameters as JSON" test "$(jq -c .body <<<"$line")" = '{"item":"a b/c?d"}'
check "  with the type's headers filled in" test "$(jq -r '.headers["X-Item"]' <<<"$line")" = "a b/c?d"
api GET "/v1/tasks/$id" >"$W/out"
check "  the result keeps the status and headers" \
    test "$(jq -c '[.result.http_status, .result.headers["content-type"], .result.file_name]' \
        "$W/out")" = '[200,"application/json","response.json"]'
check "  and the body" test "$(curl -s "$URL/v1/tasks/$id/result")" = '{"ok":true}'
json_post '{"task_type":"fetch","params":{"host":"127.0.0.1","code":404}}' >"$W/out"
id=$(jq -r .id "$W/out")
check "fetch of a 404: failed at once" wait_state "$id" failed 30
check "  with http_status, one attempt" test "$(curl -s "$URL/v1/tasks/$id" |
    jq -c '[.error.code, .attempts]')" = '["http_status",1]'
json_post '{"task_type":"fetch","params":{"host":"127.0.0.1","code":503}}' >"$W/out"
id=$(jq -r .id "$W/out")
check "fetch of a 503: failed after its two attempts" wait_state "$id" failed 30
check "  two attempts, both transient, then failed with http_status" test "$(curl -s "$URL/v1/tasks/$id" |
    jq -c '[.attempts, [.history[].outcome], .error.code]')" = '[2,["retry","retry"],"http_status"]'
check "  the receiver was asked twice" test "$(grep -c '"/status/503"' "$W/recv.log")" = 2
json_post '{"task_type":"fetch","params":{"host":"localhost"}}' >"$W/out"
id=$(jq -r .id "$W/out")
check "fetch from a host outside allow_hosts: failed" wait_state "$id" failed 30
check "  host_not_allowed, and nothing was sent" test "$(curl -s "$URL/v1/tasks/$id" |
    jq -r .error.code):$(grep -c '"/status/200"' "$W/recv.log" || true)" = "host_not_allowed:0"
json_post '{"task_type":"outside"}' >"$W/out"
id=$(jq -r .id "$W/out")
check "an address outside allow_networks: failed" wait_state "$id" failed 30
check "  address_refused" test "$(curl -s "$URL/v1/tasks/$id" | jq -r .error.code)" = address_refused

# --- retry of a failed task: the kept input, no new upload ---
api POST "/v1/tasks/$broken/retry" >"$W/out"
check "POST /v1/tasks/ID/retry of a failed task: 200, pending or running again" \
    bash -c "[ $STATUS = 200 ] && jq -e '.state == \"pending\" or .state == \"in_progress\"' '$W/out'"
check "  it fails again on its own" wait_state "$broken" failed 30
check "  its history holds both runs" test "$(curl -s "$URL/v1/tasks/$broken" | jq '.history | length')" = 2
check "taskmill retry of the failed task" bash -c "'$TASKMILL_BUILD/taskmill' --server '$URL' retry '$broken' >/dev/null"
check "  fails again, a third run in its history" bash -c "$(declare -f wait_state); URL=$URL; wait_state $broken failed 30 && [ \$(curl -s $URL/v1/tasks/$broken | jq '.history | length') = 3 ]"
api POST "/v1/tasks/$flaky/retry" >"$W/out"
check "retry of a done task: 409 not_failed" \
    test "$STATUS:$(jq -r .error.code "$W/out")" = "409:not_failed"
api POST "/v1/tasks/00000000-0000-4000-8000-000000000000/retry" >"$W/out"
check "retry of no task: 404" test "$STATUS" = 404
api POST /v1/tasks -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/hello.txt" \
    --form-string file_name=x.mp4 >"$W/out"
video=$(jq -r .id "$W/out")
check "an undecodable video fails" wait_state "$video" failed 60
input=$(ls "$ROOT/data/failed/$video" | grep '^input' || true)
check "  its input is kept in failed/" test -n "$input"
api POST "/v1/tasks/$video/retry" >/dev/null
check "  retried from that input (200)" test "$STATUS" = 200
check "  and fails the same way" wait_state "$video" failed 60

# --- SIGHUP: a changed type while a task of it runs ---
json_post '{"task_type":"slow","params":{"seconds":3}}' >"$W/out"
slow=$(jq -r .id "$W/out")
check "a slow task starts" wait_state "$slow" in_progress 10
conf_with "sleeps, reloaded"
sed -i 's/^\[type.broken\]$/[type.added]\nkind = exec\ncommand = \/bin\/true\ninput = none\n[type.broken]/' "$TM_CONF"
for n in rest queue convert callback; do kill -HUP "${TM_PID[$n]}"; done
for _ in $(seq 1 50); do
    grep -q 'reloaded' "$TM_LOG/rest.log" && grep -q reloaded "$TM_LOG/convert.log" && break
    sleep 0.1
done
api GET /v1/task-types >"$W/types"
check "after SIGHUP the new description shows" test "$(jq -r '.task_types[] |
    select(.name=="slow") | .description' "$W/types")" = "sleeps, reloaded"
check "  and the added type" jq -e '.task_types | any(.name == "added")' "$W/types"
json_post '{"task_type":"added"}' >"$W/out"
check "  which runs" wait_state "$(jq -r .id "$W/out")" done 30
check "the slow task ran on to done" wait_state "$slow" done 30
check "  in one attempt" test "$(curl -s "$URL/v1/tasks/$slow" | jq .attempts)" = 1
printf '[type.bad]\nkind = exec\ncommand = relative/path\n' >>"$TM_CONF"
kill -HUP "${TM_PID[rest]}"
for _ in $(seq 1 50); do grep -q 'reload refused' "$TM_LOG/rest.log" && break; sleep 0.1; done
check "a config with a mistake is refused on SIGHUP, naming it" \
    grep -q 'bad configuration.*type.bad' "$TM_LOG/rest.log"
api GET /v1/task-types >"$W/types"
check "  and the types stay as they were" test "$(jq '.task_types | length' "$W/types")" = 11
