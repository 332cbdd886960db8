#!/usr/bin/env bash
# test_sync.sh - `taskmill sync`, the folder scanner, against the real daemons: a fake source
# tree (mp4, mkv, mov, one file already HEVC, one random-bytes .mp4 the server cannot read,
# hidden, excluded and unmatched files, a symbolic link out of the tree) synced repeatedly; each
# video converted exactly once, results in place with the sha256 of the task, tasks deleted,
# state.json consistent. Then the crashes: kill -9 during an upload (while a second run is
# refused by the lock), a crash right after the POST, kill -9 during a download, a crash after
# the result is in place, and kills at random moments; each time the next run finishes the work
# without a duplicate task. A source that changes after it was fetched or given up is sent
# again with a new key; of two sources with one result only one is sent. Also --dry-run, a file
# still being written, `status`, a terminal's progress bars, an unreachable server and a refused
# token (exit 1, state intact), the bearer token (the server runs with a token file), and
# output = mirror and output = replace.
#
# Test hooks of the client (documented in docs/client.md, not for production):
#   TASKMILL_SYNC_TEST_THROTTLE=BYTES  caps uploads and downloads at BYTES per second
#   TASKMILL_SYNC_TEST_CRASH=POINT     SIGKILLs the client at after_post (the POST answered,
#                                      state not yet written) or after_fetch (result in place)
. "$(dirname "$0")/lib.sh"

# The server wants bearer tokens: the client sends its [client] token; the test looks with an
# admin token (which sees every task).
CLIENT_TOKEN=$(openssl rand -hex 32)
ADMIN_TOKEN=$(openssl rand -hex 32)
{
    echo "client user $(printf %s "$CLIENT_TOKEN" | sha256sum | cut -d' ' -f1)"
    echo "admin admin $(printf %s "$ADMIN_TOKEN" | sha256sum | cut -d' ' -f1)"
} >"$W/tokens"
chmod 600 "$W/tokens"
write_conf "[rest]" "tokens_file = $W/tokens"
tm_start_all
START=$SECONDS
SRC=$W/videos
STATE=$W/state
CCONF=$W/client.conf
mkdir -p "$SRC/sub/deeper" "$SRC/.hidden" "$W/elsewhere"

# Fixtures: made once in $FIX, copied with an old mtime (settle_seconds is 30 below).
make_mp4 "$FIX/clip.mp4" 2
ffmpeg -v error -y -i "$FIX/clip.mp4" -c copy "$FIX/clip.mkv"
ffmpeg -v error -y -i "$FIX/clip.mp4" -c copy "$FIX/clip.mov"
ffmpeg -v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -t 1 -c:v libx265 -preset ultrafast \
    -x265-params log-level=none "$FIX/hevc.mkv"
put() { # FIXTURE DEST: a settled copy
    mkdir -p "$(dirname "$2")"
    cp "$FIX/$1" "$2"
    touch -d '10 minutes ago' "$2"
}
put clip.mp4 "$SRC/alpha.mp4"
put clip.mkv "$SRC/sub/bravo.mkv"
put clip.mov "$SRC/sub/deeper/charlie.MOV"
put hevc.mkv "$SRC/delta-hevc.mkv"
head -c 100000 /dev/urandom >"$SRC/echo-bad.mp4"
touch -d '10 minutes ago' "$SRC/echo-bad.mp4"
put clip.mp4 "$SRC/.hidden-foxtrot.mp4"
put clip.mp4 "$SRC/.hidden/golf.mp4"
put clip.mp4 "$SRC/hotel-sample.mp4"
put clip.mp4 "$W/elsewhere/india.mp4"
ln -s "$W/elsewhere/india.mp4" "$SRC/india-link.mp4"
ln -s "$W/elsewhere" "$SRC/elsewhere-link"
echo notes >"$SRC/juliet.txt"

client_conf() { # FILE STATE_DIR FOLDER [INI lines...]; later lines win
    local file=$1 state=$2 folder=$3
    shift 3
    printf '%s\n' "[client]" "server = $URL" "token = $CLIENT_TOKEN" "folder = $folder" \
        "state_dir = $state" "settle_seconds = 30" "max_resubmits = 1" "exclude = *sample*" \
        "$@" >"$file"
}
client_conf "$CCONF" "$STATE" "$SRC"

sync_run() { # LOG [args...]: one run; its stderr goes to LOG; sets RC
    local log=$1
    shift
    RC=0
    "$TM_BIN/taskmill" --config "$CCONF" sync "$@" 2>"$log" || RC=$?
}

received() { # NAME: how many tasks the server ever created for this file name
    grep -c "received file_name='$1'" "$TM_LOG/rest.log" || true
}

server_tasks() { # how many tasks the server holds (an error answer prints "HTTP <status>")
    jget /v1/tasks '.tasks | length' -H "Authorization: Bearer $ADMIN_TOKEN"
}

upload_streaming() { # rest is storing an upload (request/.tmp-*), within 10 s
    local i
    for ((i = 0; i < 200; i++)); do
        [ -n "$(find "$ROOT/data/request" -mindepth 1 -maxdepth 1 -name '.tmp-*')" ] && return 0
        sleep 0.05
    done
    return 1
}

partial_has() { # FILE BYTES: FILE holds at least BYTES, within 30 s
    local i
    for ((i = 0; i < 600; i++)); do
        [ "$(stat -c %s "$1" 2>/dev/null || echo 0)" -ge "$2" ] && return 0
        sleep 0.05
    done
    echo "$1 has $(stat -c %s "$1" 2>/dev/null || echo no) bytes, not $2, after 30 s" >&2
    return 1
}

entry() { # STATE_DIR PATH FIELD
    jq -r --arg p "$2" ".files[] | select(.path == \$p) | .$3" "$1/state.json"
}

is_hevc() {
    test "$(ffprobe -v error -select_streams v:0 -show_entries stream=codec_name -of csv=p=0 "$1")" = hevc
}

# Every fetched entry's result exists with the recorded sha256 and size, and is HEVC; no entry
# is left sending or submitted; every task the client made has been deleted on the server.
state_consistent() {
    local state=$1 bad=0 path sha size
    jq -e '[.files[] | select(.status == "sending" or .status == "submitted")] | length == 0' \
        "$state/state.json" >/dev/null || { echo "entries still in flight" >&2; bad=1; }
    jq -e '[.files[] | select(.task_id != null and .task_deleted != true)] | length == 0' \
        "$state/state.json" >/dev/null || { echo "tasks not deleted" >&2; bad=1; }
    while IFS=$'\t' read -r path sha size; do
        if [ ! -f "$path" ] || [ "$(sha256sum <"$path" | cut -d' ' -f1)" != "$sha" ] ||
            [ "$(stat -c %s "$path")" != "$size" ] || ! is_hevc "$path"; then
            echo "bad result $path" >&2
            bad=1
        fi
    done < <(jq -r '.files[] | select(.status == "fetched") | [.result_path, .result_sha256, .result_size] | @tsv' "$state/state.json")
    [ "$(ls -A "$state" | sort | tr '\n' ' ')" = "lock state.json " ] || { echo "stray files in $state: $(ls -A "$state")" >&2; bad=1; }
    return $bad
}

no_partials() {
    test -z "$(find "$@" -name '*.partial' -o -name '.tmp.state.json')"
}

# ---- the first run: everything is sent, converted, fetched, deleted ----
sync_run "$W/run1.log" --wait
check "first run exits 0 (rc $RC)" test "$RC" = 0
for f in alpha.mp4:alpha.hevc.mp4 sub/bravo.mkv:sub/bravo.hevc.mkv \
    sub/deeper/charlie.MOV:sub/deeper/charlie.hevc.mp4; do
    src=$SRC/${f%%:*} dst=$SRC/${f#*:}
    check "$(basename "$dst") in place and HEVC" is_hevc "$dst"
    check "$(basename "$src") recorded as fetched" test "$(entry "$STATE" "$src" status)" = fetched
    check "$(basename "$src") sha256 is the task's" \
        test "$(sha256sum <"$dst" | cut -d' ' -f1)" = "$(entry "$STATE" "$src" result_sha256)"
    check "$(basename "$src") source kept" test -f "$src"
    check "$(basename "$src") sent once" test "$(received "$(basename "$src")")" = 1
done
batch=$(grep -o 'uploads go in batch [0-9a-f-]*' "$W/run1.log" | awk '{print $5}' || true)
check "the run's uploads went in one batch ($batch)" test -n "$batch"
check "  closed at the end of the run, holding every upload of the run" \
    test "$(jget "/v1/batches/$batch" '[.sealed, .joined] | tostring' -H "Authorization: Bearer $ADMIN_TOKEN")" = \
    "[true,$(grep -c "received file_name=" "$TM_LOG/rest.log")]"
check "already-HEVC file skipped" test "$(entry "$STATE" "$SRC/delta-hevc.mkv" status)" = skipped
check "already-HEVC file never sent" test "$(received delta-hevc.mkv)" = 0
check "skip logged" grep -q "skipped $SRC/delta-hevc.mkv: already hevc" "$W/run1.log"
check "unreadable file given up" test "$(entry "$STATE" "$SRC/echo-bad.mp4" status)" = gave_up
check "unreadable file: 1 + max_resubmits attempts" test "$(entry "$STATE" "$SRC/echo-bad.mp4" attempts)" = 2
check "unreadable file sent exactly twice" test "$(received echo-bad.mp4)" = 2
check "its reason is recorded" test "$(entry "$STATE" "$SRC/echo-bad.mp4" error.code)" = input_unreadable
check "the failure is logged" grep -q "gave up $SRC/echo-bad.mp4 after 2 attempts: input_unreadable" "$W/run1.log"
for n in foxtrot golf hotel india juliet; do
    check "$n (hidden, excluded, symlinked or unmatched) left alone" \
        test "$(grep -c "$n" "$STATE/state.json" "$TM_LOG/rest.log" | awk -F: '{s+=$2} END {print s}')" = 0
done
check "one plain line per event" grep -q "submitted $SRC/alpha.mp4 task=" "$W/run1.log"
check "fetch line says the sha256 was checked" \
    grep -q "fetched $SRC/alpha.mp4 -> $SRC/alpha.hevc.mp4 (sha256 ok)" "$W/run1.log"
check "no task left on the server" test "$(server_tasks)" = 0
check "state.json consistent" state_consistent "$STATE"
size=$(stat -c %s "$SRC/alpha.mp4")
mtime=$(python3 -c "import os, sys; print(os.stat(sys.argv[1]).st_mtime_ns)" "$SRC/alpha.mp4")
key=$(printf '%s\n%s\n%s' "$SRC/alpha.mp4" "$size" "$mtime" | sha256sum | cut -d' ' -f1)
check "idempotency key is sha256(path, size, mtime ns)" test "$(entry "$STATE" "$SRC/alpha.mp4" key)" = "$key"
check "state dir is 0700" test "$(stat -c %a "$STATE")" = 700

# ---- the second run does nothing ----
cp "$STATE/state.json" "$W/state.before"
sync_run "$W/run2.log" --wait
check "second run exits 0" test "$RC" = 0
check "second run sends nothing" test -z "$(grep -E 'submitted|fetched' "$W/run2.log")"
check "second run leaves state.json as it was" cmp -s "$W/state.before" "$STATE/state.json"
check "alpha still sent once" test "$(received alpha.mp4)" = 1

# ---- status: the table of this client's tasks ----
RC=0
"$TM_BIN/taskmill" --config "$CCONF" status >"$W/status.out" || RC=$?
check "status exits 0" test "$RC" = 0
check "status shows the table" grep -q '^STATUS  *TASK  *PERCENT  *PATH' "$W/status.out"
check "status lists a fetched file" grep -q "^fetched .*$SRC/alpha.mp4" "$W/status.out"
check "status shows the failure's reason" grep -q "^gave_up .*input_unreadable" "$W/status.out"

# ---- --dry-run and a file still being written ----
put clip.mp4 "$SRC/kilo.mp4"
cp "$FIX/clip.mp4" "$SRC/lima.mp4" # fresh mtime: not settled
cp "$STATE/state.json" "$W/state.before"
sync_run "$W/dry.log" --dry-run
check "dry run exits 0" test "$RC" = 0
check "dry run says what it would send" grep -q "would submit $SRC/kilo.mp4" "$W/dry.log"
check "dry run sends nothing" test "$(received kilo.mp4)" = 0
check "dry run writes no state" cmp -s "$W/state.before" "$STATE/state.json"
check "a file being written is left for the next run" \
    grep -q "left $SRC/lima.mp4 for the next run" "$W/dry.log"

# ---- two runs at once, and kill -9 during the upload ----
TASKMILL_SYNC_TEST_THROTTLE=10000 "$TM_BIN/taskmill" --config "$CCONF" sync --wait 2>"$W/slow.log" &
slow=$!
for _ in $(seq 100); do
    [ "$(entry "$STATE" "$SRC/kilo.mp4" status 2>/dev/null)" = sending ] && break
    sleep 0.05
done
check "the slow run records kilo as sending before its POST" test "$(entry "$STATE" "$SRC/kilo.mp4" status)" = sending
sync_run "$W/second.log" --wait
check "a second run at the same time exits 0 at once" test "$RC" = 0
check "and says why" grep -q "another run is in progress (lock $STATE/lock); exiting" "$W/second.log"
check "the slow run's upload is streaming into the server" upload_streaming
kill -KILL "$slow" 2>/dev/null || true
wait "$slow" 2>/dev/null || true
check "killed during the upload: no task made" test "$(received kilo.mp4)" = 0
touch -d '10 minutes ago' "$SRC/lima.mp4" # lima has settled now
sync_run "$W/after-upload.log" --wait
check "next run finishes the work (rc $RC)" test "$RC" = 0
check "kilo sent once, converted" test "$(received kilo.mp4)" = 1 -a "$(entry "$STATE" "$SRC/kilo.mp4" status)" = fetched
check "lima, settled now, sent once" test "$(received lima.mp4)" = 1 -a "$(entry "$STATE" "$SRC/lima.mp4" status)" = fetched

# ---- a crash right after the POST answered, before the state was written ----
put clip.mp4 "$SRC/mike.mp4"
RC=0
{ TASKMILL_SYNC_TEST_CRASH=after_post "$TM_BIN/taskmill" --config "$CCONF" sync 2>"$W/crash-post.log"; } 2>/dev/null || RC=$?
check "the client died after the POST (rc $RC)" test "$RC" = 137
check "its entry is still sending" test "$(entry "$STATE" "$SRC/mike.mp4" status)" = sending
check "the server has the task" test "$(received mike.mp4)" = 1
sync_run "$W/after-post.log" --wait
check "next run re-POSTs with the same key and gets the task" \
    grep -q "submitted $SRC/mike.mp4 task=.*(the server already had it)" "$W/after-post.log"
check "the server answered the repeated key" grep -q "repeated idempotency_key" "$TM_LOG/rest.log"
check "mike: no duplicate task" test "$(received mike.mp4)" = 1
check "mike fetched" test "$(entry "$STATE" "$SRC/mike.mp4" status)" = fetched

# ---- kill -9 during the download; then a crash after the result is in place ----
put clip.mp4 "$SRC/november.mp4"
sync_run "$W/submit-nov.log" # one pass: submitted, not yet done
id=$(entry "$STATE" "$SRC/november.mp4" task_id)
CURL_OPTS=(-H "Authorization: Bearer $ADMIN_TOKEN")
check "november's task is done on the server" wait_state "$id" done 60
CURL_OPTS=()
TASKMILL_SYNC_TEST_THROTTLE=8000 "$TM_BIN/taskmill" --config "$CCONF" sync 2>"$W/slow-dl.log" &
slow=$!
# Half a second's worth of the throttled download has arrived: it is under way.
check "the slow download has begun (4000 bytes in the partial)" \
    partial_has "$SRC/november.hevc.mp4.partial" 4000
kill -KILL "$slow" 2>/dev/null || true
wait "$slow" 2>/dev/null || true
check "killed during the download: a partial is left" test -s "$SRC/november.hevc.mp4.partial"
check "and no result yet" test ! -e "$SRC/november.hevc.mp4"
RC=0
{ TASKMILL_SYNC_TEST_CRASH=after_fetch "$TM_BIN/taskmill" --config "$CCONF" sync 2>"$W/resume.log"; } 2>/dev/null || RC=$?
check "the next run resumes with a Range" grep -q "resuming $SRC/november.mp4 -> $SRC/november.hevc.mp4 at [1-9]" "$W/resume.log"
check "and crashed with the result in place (rc $RC)" test "$RC" = 137 -a -f "$SRC/november.hevc.mp4"
sync_run "$W/after-fetch.log" --wait
check "then the run after it records and deletes" test "$(entry "$STATE" "$SRC/november.mp4" status)" = fetched
check "november sent once" test "$(received november.mp4)" = 1

# ---- kill -9 at random moments ----
RANDOM=${TASKMILL_SYNC_SEED:-$$}
for n in oscar papa quebec; do put clip.mp4 "$SRC/random/$n.mp4"; done
for _ in 1 2 3 4 5 6; do
    TASKMILL_SYNC_TEST_THROTTLE=300000 "$TM_BIN/taskmill" --config "$CCONF" sync --wait 2>>"$W/random.log" &
    pid=$!
    ms=$((300 + RANDOM % 2500))
    sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done
sync_run "$W/after-random.log" --wait
check "after 6 random kills the run finishes (rc $RC)" test "$RC" = 0
for n in oscar papa quebec; do
    check "$n converted once" test "$(received $n.mp4)" = 1 -a "$(entry "$STATE" "$SRC/random/$n.mp4" status)" = fetched
done

# ---- a source that changes after it was fetched, or after it was given up, is new ----
oldkey=$(entry "$STATE" "$SRC/alpha.mp4" key)
touch -d '5 minutes ago' "$SRC/alpha.mp4"
cp "$FIX/clip.mp4" "$SRC/echo-bad.mp4"
touch -d '5 minutes ago' "$SRC/echo-bad.mp4"
sync_run "$W/changed.log" --wait
check "a changed source is sent again, with a new key" \
    test "$(received alpha.mp4):$(entry "$STATE" "$SRC/alpha.mp4" status)" = 2:fetched -a \
    "$(entry "$STATE" "$SRC/alpha.mp4" key)" != "$oldkey"
check "its new result replaced the old one" grep -q "fetched $SRC/alpha.mp4 -> $SRC/alpha.hevc.mp4" "$W/changed.log"
check "a given-up file that was fixed is converted" \
    test "$(received echo-bad.mp4):$(entry "$STATE" "$SRC/echo-bad.mp4" status)" = 3:fetched
check "no task left on the server" test "$(server_tasks)" = 0
check "state.json consistent after the crashes" state_consistent "$STATE"
check "no partial or temporary file left" no_partials "$SRC" "$STATE"
check "sources untouched" test "$(find "$SRC" -name '*.mp4' ! -name '*.hevc.*' -newer "$W/state.before" | wc -l)" = 0

# ---- the server unreachable, or refusing our token: exit 1, state intact ----
put clip.mp4 "$W/d-src/whiskey.mp4"
client_conf "$W/down.conf" "$W/d-state" "$W/d-src" "server = http://127.0.0.1:1"
RC=0
"$TM_BIN/taskmill" --config "$W/down.conf" sync 2>"$W/down.log" || RC=$?
check "server unreachable: exit 1 (rc $RC)" test "$RC" = 1
check "and it says so" grep -q "POST http://127.0.0.1:1/v1/tasks" "$W/down.log"
check "the file stays sending, with its key" test "$(entry "$W/d-state" "$W/d-src/whiskey.mp4" status)" = sending
client_conf "$W/down.conf" "$W/d-state" "$W/d-src" "token = wrong"
RC=0
"$TM_BIN/taskmill" --config "$W/down.conf" sync 2>"$W/down.log" || RC=$?
check "a refused token: exit 1 (rc $RC)" test "$RC" = 1 -a "$(entry "$W/d-state" "$W/d-src/whiskey.mp4" status)" = sending
check "and it says why" grep -q "401: unauthorized" "$W/down.log"
client_conf "$W/down.conf" "$W/d-state" "$W/d-src"
RC=0
"$TM_BIN/taskmill" --config "$W/down.conf" sync --wait 2>"$W/down.log" || RC=$?
check "with the server back the work is done once" \
    test "$RC:$(entry "$W/d-state" "$W/d-src/whiskey.mp4" status):$(received whiskey.mp4)" = 0:fetched:1

# ---- output = mirror, with progress bars in a terminal ----
put clip.mp4 "$W/m-src/sub/romeo.mp4"
put clip.mov "$W/m-src/sierra.mov"
put clip.mp4 "$W/m-src/sierra.mp4" # the same result as sierra.mov: only one may be sent
client_conf "$W/mirror.conf" "$W/m-state" "$W/m-src" "output = mirror" "output_dir = $W/m-out/"
RC=0
script -qec "$TM_BIN/taskmill --config $W/mirror.conf sync --wait" /dev/null >"$W/tty.log" 2>&1 || RC=$?
check "the run in a terminal exits 0 (rc $RC)" test "$RC" = 0
check "terminal: upload bar" grep -q 'uploading   \[#' "$W/tty.log"
check "terminal: download bar" grep -q 'downloading \[#' "$W/tty.log"
check "mirror: result under output_dir, same tree" is_hevc "$W/m-out/sub/romeo.hevc.mp4"
check "mirror: mov gives mp4" is_hevc "$W/m-out/sierra.hevc.mp4"
check "two sources with one result: one is sent" \
    test "$(($(received sierra.mov) + $(received sierra.mp4)))" = 1
check "the other is left, saying why" grep -q "would also be the result of $W/m-src/sierra" "$W/tty.log"
check "mirror: sources untouched, nothing beside them" \
    test "$(find "$W/m-src" -type f | sort | tr '\n' ' ')" = "$W/m-src/sierra.mov $W/m-src/sierra.mp4 $W/m-src/sub/romeo.mp4 "
check "mirror: state consistent" state_consistent "$W/m-state"

# ---- output = replace ----
put clip.mp4 "$W/r-src/tango.mp4"
put clip.mov "$W/r-src/tango.mov" # its result would be tango.mp4: never sent
ffmpeg -v error -y -i "$FIX/clip.mp4" -c:v mpeg4 -c:a mp3 "$W/r-src/uniform.avi"
touch -d '10 minutes ago' "$W/r-src/uniform.avi"
client_conf "$W/replace.conf" "$W/r-state" "$W/r-src" "output = replace"
"$TM_BIN/taskmill" --config "$W/replace.conf" sync --wait 2>"$W/replace.log" || fail "replace run"
check "replace: tango.mp4 is now HEVC" is_hevc "$W/r-src/tango.mp4"
check "replace: uniform.avi became uniform.mkv" is_hevc "$W/r-src/uniform.mkv"
check "replace: the avi is gone after the mkv is in place" test ! -e "$W/r-src/uniform.avi"
check "replace: tango.mov, whose result would overwrite tango.mp4, is kept and not sent" \
    test "$(received tango.mov):$(entry "$W/r-state" "$W/r-src/tango.mov" error.code)" = 0:already_converted
check "replace: tango.mov untouched" cmp -s "$FIX/clip.mov" "$W/r-src/tango.mov"
check "replace: state consistent" state_consistent "$W/r-state"
"$TM_BIN/taskmill" --config "$W/replace.conf" sync --wait 2>"$W/replace2.log" || fail "replace rerun"
check "replace: a second run sends nothing" test -z "$(grep -E 'submitted|skipped' "$W/replace2.log")"
check "replace: each sent once" test "$(received tango.mp4)" = 1 -a "$(received uniform.avi)" = 1

check "no task left on the server" test "$(server_tasks)" = 0
check "nothing written outside the root" test -z "$(files_outside_root)"
cat "$W/random.log" "$W/after-random.log" >"$W/random-all.log"
echo "figures: $(grep -c 'received file_name' "$TM_LOG/rest.log") tasks created," \
    "$(grep -c 'repeated idempotency_key' "$TM_LOG/rest.log") repeated keys answered," \
    "random kills: $(grep -c 'already had it' "$W/random-all.log" || true) re-POSTs found the task," \
    "$(grep -c 'resuming' "$W/random-all.log" || true) downloads resumed; $((SECONDS - START)) s"
