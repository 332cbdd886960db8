#!/usr/bin/env bash
# test_auth.sh - bearer tokens: 401 without or with a wrong token, each token sees only its own
# tasks (another's is 404), an admin sees all, per-token idempotency keys, the per-token task
# limit, the per-token quota of stored bytes (finished tasks count), a failed task's input kept
# or not, and the start-up refusals (public listen without tokens, a world-readable token file).
. "$(dirname "$0")/lib.sh"

tok() { openssl rand -hex 32; }
hash() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
ALICE=$(tok) BOB=$(tok) ADMIN=$(tok)
{
    echo "# test tokens"
    echo "alice user $(hash "$ALICE")"
    echo "bob user $(hash "$BOB")"
    echo "root admin $(hash "$ADMIN")"
} >"$T/tokens"
chmod 600 "$T/tokens"
write_conf "[rest]" "tokens_file = $T/tokens" "max_tasks_per_token = 3"
# write_conf starts a [convert] section; the [rest] lines above follow it, which INI allows.
tm_start_all
make_mp4 "$FIX/a.mp4" 1

as() { local who=$1; shift; api "$@" -H "Authorization: Bearer $who"; }

api GET /v1/tasks >"$W/out"
check "no token: 401 unauthorized" test "$STATUS:$(jq -r .error.code "$W/out")" = 401:unauthorized
curl -s -D "$W/hdr" -o /dev/null "$URL/v1/status"
check "401 carries WWW-Authenticate: Bearer" grep -qi '^www-authenticate: Bearer' "$W/hdr"
as "$(tok)" GET /v1/tasks >/dev/null
check "wrong token: 401" test "$STATUS" = 401
api GET /v1/tasks -H "Authorization: Basic $(printf 'alice:x' | base64)" >/dev/null
check "not a bearer token: 401" test "$STATUS" = 401
# Expect: 100-continue lets the refusal arrive before curl sends the body, as a big upload would.
api POST /v1/tasks -H 'Expect: 100-continue' -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/a.mp4" >/dev/null
check "upload without a token: 401 before the body" test "$STATUS" = 401
check "no upload stored for it" test -z "$(ls -A "$ROOT/data/request")"
api GET /healthz >/dev/null
check "healthz needs no token" test "$STATUS" = 200

as "$ALICE" POST /v1/tasks -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/a.mp4" >"$W/out"
check "alice creates a task" test "$STATUS" = 201
id=$(jq -r .id "$W/out")
as "$ALICE" GET "/v1/tasks/$id" >/dev/null
check "alice sees her task" test "$STATUS" = 200
as "$BOB" GET "/v1/tasks/$id" >"$W/out"
check "bob gets 404 for alice's task" test "$STATUS:$(jq -r .error.code "$W/out")" = 404:task_not_found
as "$BOB" DELETE "/v1/tasks/$id" >/dev/null
check "bob cannot delete it" test "$STATUS" = 404
as "$BOB" GET "/v1/tasks/$id/result" >/dev/null
check "bob cannot fetch its result" test "$STATUS" = 404
as "$BOB" GET /v1/tasks >"$W/out"
check "bob's list is empty ($STATUS)" test "$STATUS:$(jq '.tasks | length' "$W/out")" = 200:0
as "$ADMIN" GET /v1/tasks >"$W/out"
check "the admin's list shows alice's task ($STATUS)" \
    test "$STATUS:$(jq -r '[.tasks[].id] | join(" ")' "$W/out")" = "200:$id"
# The job directory moves while we look; read it once it has settled in done/.
CURL_OPTS=(-H "Authorization: Bearer $ADMIN")
check "alice's task is done (seen by the admin)" wait_state "$id" done 60
CURL_OPTS=()
check "request.json records the owner" test "$(jq -r .owner "$ROOT/data/done/$id/request.json")" = alice

# Idempotency keys are per token.
as "$ALICE" POST /v1/tasks -F idempotency_key=k1 -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/a.mp4" >"$W/out"
check "alice's POST with key k1: 201 ($STATUS)" test "$STATUS" = 201
k1=$(jq -r .id "$W/out")
as "$BOB" POST /v1/tasks -F idempotency_key=k1 -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/a.mp4" >"$W/out"
k2=$(jq -r .id "$W/out")
check "the same key from another token makes its own task" test "$STATUS" = 201 -a "$k1" != "$k2"
in_done() { # ID: waits up to 60 s for the job to be in done/
    local i
    for ((i = 0; i < 300; i++)); do
        [ -d "$ROOT/data/done/$1" ] && return 0
        sleep 0.2
    done
    echo "$1 is not in done/ after 60 s: $(find "$ROOT/data" -maxdepth 2 -name "$1")" >&2
    return 1
}
for t in "$id" "$k1" "$k2"; do check "task $t reached done/" in_done "$t"; done

# The per-token limit counts unfinished tasks only.
tm_stop convert
for n in 1 2 3; do
    as "$BOB" POST /v1/tasks -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/a.mp4" >/dev/null
    check "bob's unfinished task $n of 3: 201 ($STATUS)" test "$STATUS" = 201
done
as "$BOB" POST /v1/tasks -H 'Expect: 100-continue' -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/a.mp4" >"$W/out"
check "over max_tasks_per_token: 429 too_many_tasks" test "$STATUS:$(jq -r .error.code "$W/out")" = 429:too_many_tasks
as "$ALICE" POST /v1/tasks -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/a.mp4" >/dev/null
check "another token is not limited by bob's tasks" test "$STATUS" = 201
as "$ADMIN" GET /v1/tasks >"$W/out"
check "the admin sees everyone's tasks ($STATUS)" test "$STATUS:$(jq '.tasks | length' "$W/out")" = 200:7
tm_start convert

# The per-token quota of stored bytes counts finished tasks too.
usage_of() { # OWNER: bytes of the files in the owner's job folders
    local d
    for d in "$ROOT"/data/*/*/; do
        if [ "$(jq -r .owner "$d/request.json" 2>/dev/null)" = "$1" ]; then
            find "$d" -maxdepth 1 -type f -printf '%s\n'
        fi
    done | awk '{s += $1} END {print s + 0}'
}
wait_all_finished() {
    local i
    for ((i = 0; i < 300; i++)); do
        [ -z "$(find "$ROOT/data/pending" "$ROOT/data/in_progress" "$ROOT/data/request" \
            -mindepth 1 -maxdepth 1)" ] && return 0
        sleep 0.2
    done
    return 1
}
check "every task finished" wait_all_finished
size=$(stat -c %s "$FIX/a.mp4")
quota=$(($(usage_of alice) + size * 3 / 2))
tm_stop rest
tm_stop queue
# keep_input: a finished task keeps its input, so one more task's worth is over the quota.
write_conf "keep_input = yes" "[rest]" "tokens_file = $T/tokens" "max_tasks_per_token = 3" \
    "max_bytes_per_token = $quota"
tm_start queue
tm_start rest
as "$ALICE" POST /v1/tasks -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/a.mp4" >"$W/out"
check "under max_bytes_per_token: 201" test "$STATUS" = 201
quota_id=$(jq -r .id "$W/out")
check "that task finished" wait_all_finished
as "$ALICE" POST /v1/tasks -H 'Expect: 100-continue' -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/a.mp4" >"$W/out"
check "over max_bytes_per_token with only finished tasks: 507 quota_exceeded" \
    test "$STATUS:$(jq -r .error.code "$W/out")" = 507:quota_exceeded
check "no upload stored for it" test -z "$(ls -A "$ROOT/data/request")"
as "$BOB" POST /v1/tasks -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/a.mp4" >/dev/null
check "bob's quota is his own" test "$STATUS" = 201
as "$ALICE" DELETE "/v1/tasks/$quota_id" >/dev/null
check "alice deletes her finished quota task: 204 ($STATUS)" test "$STATUS" = 204
as "$ALICE" DELETE "/v1/tasks/$id" >/dev/null
check "alice deletes her first task: 204 ($STATUS)" test "$STATUS" = 204
as "$ALICE" POST /v1/tasks -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/a.mp4" >/dev/null
check "deleting finished tasks makes room again (201)" test "$STATUS" = 201
check "every task finished" wait_all_finished

# A failed task keeps its input by default ([queue] keep_failed_input), counted in the quota;
# with keep_failed_input = no it is removed.
tm_stop rest
tm_stop queue
write_conf "[rest]" "tokens_file = $T/tokens" # no quota from here on
tm_start queue
tm_start rest
head -c 20000 /dev/urandom >"$FIX/junk.mp4"
as "$BOB" POST /v1/tasks -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/junk.mp4" >"$W/out"
check "bob sends a junk file (201)" test "$STATUS" = 201
junk=$(jq -r .id "$W/out")
check "a junk file fails" wait_all_finished
check "the junk task failed" test -d "$ROOT/data/failed/$junk"
check "the failed task kept its input" test -s "$ROOT/data/failed/$junk/input.mp4"
tm_stop queue
printf '[queue]\nkeep_failed_input = no\n' >>"$TM_CONF"
tm_start queue
as "$BOB" POST /v1/tasks -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/junk.mp4" >"$W/out"
check "bob sends it again (201)" test "$STATUS" = 201
junk=$(jq -r .id "$W/out")
check "another junk file fails" wait_all_finished
check "with keep_failed_input = no its input is gone" \
    test -d "$ROOT/data/failed/$junk" -a ! -e "$ROOT/data/failed/$junk/input.mp4"

# Start-up refusals. As root rest could bind port 1, so a rest that wrongly started would
# serve: timeout ends it (status 124), which fails the check instead of hanging the test.
refuses() { # CONF: rest exits by itself with an error, its stderr in $W/err
    local rc=0
    timeout 5 "$TM_BIN/taskmill-rest" --config "$1" 2>"$W/err" || rc=$?
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]
}
tm_write_conf "$W/public.conf" "$ROOT" "$PORT"
sed -i 's/^listen = .*/listen = 0.0.0.0:1/' "$W/public.conf"
check "rest refuses a public listen without tokens" refuses "$W/public.conf"
check "and says why" grep -q "refusing to serve 0.0.0.0:1 without tokens" "$W/err"
cp "$T/tokens" "$W/open-tokens"
chmod 644 "$W/open-tokens"
tm_write_conf "$W/badtok.conf" "$ROOT" 1 "[rest]" "tokens_file = $W/open-tokens"
check "rest refuses a world-readable token file" refuses "$W/badtok.conf"
check "and names it" grep -q "open-tokens: must not be accessible to others" "$W/err"
