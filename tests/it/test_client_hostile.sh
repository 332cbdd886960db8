#!/usr/bin/env bash
# test_client_hostile.sh - `taskmill sync` against a server that lies: it names the result of
# movie.mp4 "movie.srt" (valid size and sha256) to make output = replace overwrite the
# subtitles beside the video. The client takes the result's extension from its own source,
# refuses the answer, and touches neither file. (A hostile server cannot be the real one:
# tests/it/hostile_server.py plays it.)
. "$(dirname "$0")/lib.sh"

SRC=$W/videos
mkdir -p "$SRC"
make_mp4 "$SRC/movie.mp4" 1
printf '1\n00:00:00,000 --> 00:00:01,000\nkeep me\n' >"$SRC/movie.srt"
touch -d '10 minutes ago' "$SRC/movie.mp4" "$SRC/movie.srt"
cp "$SRC/movie.mp4" "$W/movie.mp4.orig"
cp "$SRC/movie.srt" "$W/movie.srt.orig"
head -c 5000 /dev/urandom >"$W/evil.bin"
python3 "$TASKMILL_SRC/tests/it/hostile_server.py" "$W/port" movie.srt "$W/evil.bin" &
for _ in $(seq 50); do [ -s "$W/port" ] && break; sleep 0.1; done
check "the hostile server is up" test -s "$W/port"
cat >"$W/client.conf" <<EOC
[client]
server = http://127.0.0.1:$(cat "$W/port")
folder = $SRC
state_dir = $W/state
output = replace
settle_seconds = 0
EOC
rc1=0 rc2=0
"$TM_BIN/taskmill" --config "$W/client.conf" sync 2>"$W/sync.log" || rc1=$?
"$TM_BIN/taskmill" --config "$W/client.conf" sync 2>>"$W/sync.log" || rc2=$?
cat "$W/sync.log"
# docs/client.md: a failed task is recorded, not an error; the runs finish (exit 0).
check "both runs finish, the lie recorded as a failed task (exit $rc1 $rc2)" test "$rc1:$rc2" = 0:0
check "the subtitles beside the video are untouched" cmp -s "$W/movie.srt.orig" "$SRC/movie.srt"
check "the video is untouched" cmp -s "$W/movie.mp4.orig" "$SRC/movie.mp4"
check "no other file appeared" test "$(ls "$SRC" | tr '\n' ' ')" = "movie.mp4 movie.srt "
check "the client recorded the refusal" \
    test "$(jq -r '.files[] | .error.code' "$W/state/state.json" 2>/dev/null | head -1)" = bad_answer
