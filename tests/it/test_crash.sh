#!/usr/bin/env bash
# test_crash.sh - the crash matrix: with 30+ tasks in flight, kill -9 a randomly chosen daemon
# at random moments, for many rounds; after each kill either restart only the victim (peers
# must reconnect) or stop the rest and restart all through init (boot recovery). A client keeps
# uploading meanwhile, until exactly TASKS tasks are accepted (or its deadline passes: a failure,
# not a hang). In the end every accepted task (201) is in done/ exactly once with a valid HEVC
# output whose sha256 is the one in its result.json, it reached done once, nothing is pending/in_progress, and no temporary or
# partial file remains anywhere under the root. A task stored whose 201 never reached the client
# (rest killed between the durable rename and the answer) may also be done: it must be one the
# client did send. Prints the figures.
. "$(dirname "$0")/lib.sh"

ROUNDS=${TASKMILL_CRASH_ROUNDS:-24}
TASKS=${TASKMILL_CRASH_TASKS:-36}
SEED=${TASKMILL_CRASH_SEED:-$$}
# Seconds the background uploader may take to get its TASKS accepted (about 30 s normally).
UPLOAD_DEADLINE=${TASKMILL_CRASH_UPLOAD_DEADLINE:-240}
RANDOM=$SEED
echo "seed $SEED, $ROUNDS rounds, $TASKS tasks"

write_conf "workers = 2" "max_attempts = 100"
tm_start_all
make_mp4 "$FIX/clip.mp4" 2 640x360
ACCEPTED=$W/accepted

# Uploads one task; only a 201 counts as accepted. rest may be down: that is not a loss.
upload() {
    local n=$1 out
    echo "clip$n.mp4" >>"$W/attempted"
    out=$(curl -s -m 20 -w '\n%{http_code}' -F task_type=convert_video_to_libx265 \
        -F "file_name=clip$n.mp4" -F "file_data=@$FIX/clip.mp4" \
        -F 'params={"preset":"fast"}' "$URL/v1/tasks" 2>/dev/null) || return 1
    [ "$(tail -n 1 <<<"$out")" = 201 ] || return 1
    sed '$d' <<<"$out" | jq -r .id >>"$ACCEPTED"
}

# Uploads until the file holds TASKS accepted ids; it is the only writer from here on, and adds
# one line per 201, so it stops at exactly TASKS. Exits 1 when the deadline passes first.
uploader() {
    local n=0 deadline=$((SECONDS + UPLOAD_DEADLINE))
    while [ "$(wc -l <"$ACCEPTED")" -lt "$TASKS" ]; do
        if [ $SECONDS -ge $deadline ]; then
            echo "uploader: only $(wc -l <"$ACCEPTED") of $TASKS tasks accepted after ${UPLOAD_DEADLINE}s" >&2
            exit 1
        fi
        upload $n || sleep 0.2
        n=$((n + 1))
    done
}
: >"$ACCEPTED"
for n in $(seq 1 12); do upload "pre$n"; done
uploader &
upid=$!
# The uploader must not outlive the test (a test that stops early, e.g. a daemon that failed
# to restart, would leave it looping).
test_cleanup() { [ -z "${upid:-}" ] || kill "$upid" 2>/dev/null || true; }

kills=0 full=0 single=0
declare -A killed
for ((round = 1; round <= ROUNDS; round++)); do
    sleep "$(printf '0.%03d' $((RANDOM % 1000)))"
    names=(init queue convert callback rest)
    victim=${names[$((RANDOM % 5))]}
    pid=${TM_PID[$victim]}
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    unset "TM_PID[$victim]"
    kills=$((kills + 1))
    killed[$victim]=$((${killed[$victim]:-0} + 1))
    if [ "$victim" != init ] && [ $((RANDOM % 2)) -eq 0 ]; then
        single=$((single + 1))
        tm_start "$victim" # the others must cope: reconnect, requeue
    else
        full=$((full + 1))
        tm_stop_all || fail "a daemon did not stop cleanly in round $round"
        tm_start_all # init resets what was interrupted
    fi
done
uprc=0
wait $upid || uprc=$?
check "the uploader got its $TASKS tasks accepted within ${UPLOAD_DEADLINE}s (exit $uprc)" test "$uprc" -eq 0
accepted=$(sort -u "$ACCEPTED" | wc -l)

# Let the queue drain.
for _ in $(seq 600); do
    left=$(find "$ROOT/data/request" "$ROOT/data/pending" "$ROOT/data/in_progress" -mindepth 1 -maxdepth 1 | wc -l)
    [ "$left" -eq 0 ] && break
    sleep 0.5
done

lost=0 dup=0 bad=0
for id in $(sort -u "$ACCEPTED"); do
    n=$(find "$ROOT/data" -mindepth 2 -maxdepth 2 -name "$id" | wc -l)
    if [ "$n" -ne 1 ] || [ ! -d "$ROOT/data/done/$id" ]; then
        lost=$((lost + 1))
        echo "lost or misplaced: $id ($(find "$ROOT/data" -name "$id"))" >&2
        continue
    fi
    moves=$(cat "$TM_LOG/queue.log" | grep -c "$id: moved from=in_progress to=done" || true)
    # 0 is possible: a queue killed after the move but before its log line.
    [ "$moves" -le 1 ] || { dup=$((dup + 1)); echo "$id reached done $moves times" >&2; }
    codec=$(ffprobe -v error -select_streams v -show_entries stream=codec_name -of csv=p=0 \
        "$ROOT/data/done/$id/output.mp4" 2>/dev/null || true)
    [ "$codec" = hevc ] || { bad=$((bad + 1)); echo "$id: output codec '$codec'" >&2; }
    # The file is the one the converter finished: its sha256 is the one result.json records.
    want=$(jq -r .sha256 "$ROOT/data/done/$id/result.json" 2>/dev/null || echo "no result.json")
    got=$(sha256sum <"$ROOT/data/done/$id/output.mp4" 2>/dev/null | cut -d' ' -f1 || true)
    [ "$got" = "$want" ] || { bad=$((bad + 1)); echo "$id: output sha256 '$got', result.json '$want'" >&2; }
done
done_n=$(find "$ROOT/data/done" -mindepth 1 -maxdepth 1 | wc -l)
unacked=0 foreign=0
for dir in "$ROOT"/data/done/*/; do
    id=$(basename "$dir")
    grep -qx "$id" "$ACCEPTED" && continue
    name=$(jq -r .file_name "$dir/request.json")
    if grep -qx "$name" "$W/attempted"; then unacked=$((unacked + 1)); else foreign=$((foreign + 1)); fi
done
temps=$(find "$ROOT/data" \( -name '*.partial' -o -name '.tmp*' \) | wc -l)

echo "figures: rounds=$ROUNDS kills=$kills (init ${killed[init]:-0}, queue ${killed[queue]:-0}," \
    "convert ${killed[convert]:-0}, callback ${killed[callback]:-0}, rest ${killed[rest]:-0})" \
    "single-restarts=$single full-restarts=$full accepted=$accepted done=$done_n" \
    "stored-but-unacknowledged=$unacked lost=$lost" \
    "duplicates=$dup bad-outputs=$bad temp-files=$temps"
check "exactly $TASKS tasks accepted, each id once ($accepted distinct, $(wc -l <"$ACCEPTED") lines)" \
    test "$accepted:$(wc -l <"$ACCEPTED")" = "$TASKS:$TASKS"
check "no accepted task lost" test "$lost" -eq 0
check "no task reached done twice" test "$dup" -eq 0
check "every output is valid HEVC with result.json's sha256" test "$bad" -eq 0
check "done/ holds the accepted tasks plus only uploads the client sent" \
    test "$foreign" -eq 0 -a "$done_n" -eq $((accepted + unacked))
check "nothing pending, in progress or half-uploaded" \
    test -z "$(find "$ROOT/data/request" "$ROOT/data/pending" "$ROOT/data/in_progress" "$ROOT/data/trash" -mindepth 1)"
check "no temporary or partial file anywhere" test "$temps" -eq 0
check "nothing in failed/ or corrupt/" test -z "$(find "$ROOT/data/failed" "$ROOT/data/corrupt" -mindepth 1)"
