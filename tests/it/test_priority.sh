#!/usr/bin/env bash
# test_priority.sh - pending tasks are converted by priority (higher first) and FIFO within a priority, with one worker.
. "$(dirname "$0")/lib.sh"

write_conf "[convert]" "workers = 1"
# Everything but the converter: the tasks pile up in pending/.
for n in init queue callback rest; do tm_start "$n"; done

make_mp4 "$FIX/clip.mp4" 1 160x120

# Submission order and priorities; the names say both.
PRIOS=(100 900 500 900 500 1000)
IDS=()
for i in "${!PRIOS[@]}"; do
    p=${PRIOS[$i]}
    id=$(submit "$FIX/clip.mp4" -F "priority=$p" --form-string "file_name=n$i-p$p.mp4")
    IDS+=("$id")
    check "task $i (priority $p) accepted" test -n "$id"
done
for i in "${!IDS[@]}"; do
    wait_state "${IDS[$i]}" pending 10 || true
    api GET "/v1/tasks/${IDS[$i]}" >"$W/out"
    check "task $i is pending ($STATUS)" test "$STATUS:$(jq -r .state "$W/out")" = 200:pending
    check "task $i keeps priority ${PRIOS[$i]}" test "$(jq -r .priority "$W/out")" = "${PRIOS[$i]}"
    check "task $i has no started_at yet" test "$(jq -r .started_at "$W/out")" = null
done
api GET /v1/status >"$W/out"
check "status before: waiting 6, working 0, done 0 ($STATUS $(jq -c . "$W/out"))" \
    test "$STATUS:$(jq -c '[.waiting, .working, .done, .failed]' "$W/out")" = '200:[6,0,0,0]'
api GET '/v1/tasks?state=pending' >"$W/out"
check "the pending list has the 6 tasks ($STATUS)" \
    test "$STATUS:$(jq -r '[.tasks[].id] | sort | join(" ")' "$W/out")" = "200:$(printf '%s\n' "${IDS[@]}" | sort | paste -sd' ')"

tm_start convert
# While the jobs move pending -> in_progress -> done, a watcher asks for each task and for the
# whole list as fast as it can: a task in flight is never a 404, never missing or twice listed.
python3 - "$URL" "${IDS[@]}" >"$W/watch" <<'PY'
import json, sys, time, urllib.error, urllib.request
url, ids = sys.argv[1], sys.argv[2:]
gets = missing = lists = badlists = 0
deadline = time.time() + 90
while time.time() < deadline:
    states = []
    for i in ids:
        gets += 1
        try:
            states.append(json.load(urllib.request.urlopen(f"{url}/v1/tasks/{i}"))["state"])
        except urllib.error.HTTPError:
            missing += 1
    lists += 1
    got = sorted(t["id"] for t in json.load(urllib.request.urlopen(f"{url}/v1/tasks"))["tasks"])
    badlists += got != sorted(ids)
    if states and all(s == "done" for s in states):
        break
print(gets, missing, lists, badlists)
PY
read -r gets missing lists badlists <"$W/watch"
check "no 404 for a task in flight ($gets GETs)" test "$missing" = 0
check "the list always held each task once ($lists lists)" test "$badlists" = 0
for i in "${!IDS[@]}"; do
    check "task $i is done" wait_state "${IDS[$i]}" "done" 90
done

# The order the single worker took them in, from started_at (RFC 3339, UTC, fixed width, so
# it sorts as text).
: >"$W/started"
for i in "${!IDS[@]}"; do
    api GET "/v1/tasks/${IDS[$i]}" >"$W/out"
    check "task $i answers 200 ($STATUS)" test "$STATUS" = 200
    printf '%s %s\n' "$(jq -r .started_at "$W/out")" "$i" >>"$W/started"
    check "task $i result keeps its name" test "$(jq -r .result.file_name "$W/out")" = "n$i-p${PRIOS[$i]}.mp4"
done
order=$(sort "$W/started" | awk '{print $2}' | tr '\n' ' ')
# Expected: 1000 (#5), 900 (#1 then #3), 500 (#2 then #4), 100 (#0).
check "started in priority order, FIFO within a priority (got: $order)" test "$order" = "5 1 3 2 4 0 "
check "started_at values are distinct" test "$(cut -d' ' -f1 "$W/started" | sort -u | wc -l)" = 6
# A single worker: each task started after the one before it finished.
prev_finished=
for i in 5 1 3 2 4 0; do
    api GET "/v1/tasks/${IDS[$i]}" >"$W/out"
    check "task $i answers 200 with its times ($STATUS)" \
        test "$STATUS:$(jq -r '[.started_at, .finished_at] | map(type) | join(",")' "$W/out")" = 200:string,string
    started=$(jq -r .started_at "$W/out")
    if [ -n "$prev_finished" ]; then
        check "task $i started after the previous one finished" test "$(printf '%s\n%s\n' "$prev_finished" "$started" | sort | head -1)" = "$prev_finished"
    fi
    prev_finished=$(jq -r .finished_at "$W/out")
done

api GET /v1/status >"$W/out"
check "status after: waiting 0, working 0, done 6 ($STATUS $(jq -c . "$W/out"))" \
    test "$STATUS:$(jq -c '[.waiting, .working, .done, .failed]' "$W/out")" = '200:[0,0,6,0]'
check "nothing written outside the root" test -z "$(files_outside_root)"
