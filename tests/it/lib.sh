# tests/it/lib.sh - shared setup for the integration tests: a temporary root, a free port, the
# five real daemons (scripts/daemons.sh), curl helpers, and media fixtures made with FFmpeg's
# lavfi sources. Sourcing it installs a trap that stops the daemons, checks they exited
# cleanly (exit status 0, so also no sanitizer report), and removes the root.

set -euo pipefail
: "${TASKMILL_BUILD:?set TASKMILL_BUILD to the build directory}"
: "${TASKMILL_SRC:?set TASKMILL_SRC to the source directory}"

T=$(mktemp -d /tmp/taskmill-it.XXXXXX)
ROOT=$T/root
FIX=$T/fixtures
W=$T/work # the test's own downloads and notes
mkdir -p "$ROOT" "$FIX" "$W"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
TM_BIN=$TASKMILL_BUILD
TM_LOG=$T/log
TM_CONF=$T/taskmill.conf
mkdir -p "$TM_LOG"
. "$TASKMILL_SRC/scripts/daemons.sh"
FAILS=0

fail() {
    echo "FAIL: $*" >&2
    FAILS=$((FAILS + 1))
}

ok() {
    echo "ok: $*"
}

# check DESCRIPTION COMMAND...: runs COMMAND, counts a failure when it fails.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

# write_conf [INI lines...]: the test's config (preset ultrafast keeps the suite quick).
write_conf() {
    tm_write_conf "$TM_CONF" "$ROOT" "$PORT" "min_free_bytes = 0" "[convert]" "preset = ultrafast" "$@"
    # scripts/test --config FILE: that file's settings come first; the test's own paths, port
    # and settings above follow and win (the last value of a key counts).
    if [ -n "${TASKMILL_TEST_BASE_CONF:-}" ]; then
        cat "$TASKMILL_TEST_BASE_CONF" - "$TM_CONF" <<<"" >"$TM_CONF.new"
        mv "$TM_CONF.new" "$TM_CONF"
    fi
}

finish() {
    local rc=$?
    if ! tm_stop_all; then
        fail "a daemon did not exit cleanly"
    fi
    # A test may define test_cleanup (e.g. to unmount a tmpfs it put on the root).
    if declare -F test_cleanup >/dev/null; then test_cleanup || true; fi
    if [ $FAILS -ne 0 ] || [ $rc -ne 0 ]; then
        echo "--- logs" >&2
        tail -n 40 "$TM_LOG"/*.log >&2 || true
        rm -rf "$T"
        echo "$(basename "$0"): $FAILS failed" >&2
        exit 1
    fi
    rm -rf "$T"
    echo "$(basename "$0"): all passed"
}
trap finish EXIT

# api METHOD PATH [curl args...]: prints the body, sets STATUS.
api() {
    local method=$1 path=$2
    shift 2
    local out
    out=$(curl -s -S -o "$W/body" -w '%{http_code}' -X "$method" "$URL$path" "$@") || true
    STATUS=$out
    cat "$W/body"
}

# submit FILE [curl -F args...]: posts a task, prints its id.
submit() {
    local file=$1
    shift
    local body
    body=$(curl -s -S -w '\n%{http_code}' -F task_type=convert_video_to_libx265 \
        -F "file_path=$(dirname "$file")" -F "file_data=@$file" "$@" "$URL/v1/tasks")
    if [ "$(tail -n 1 <<<"$body")" != 201 ]; then
        echo "submit failed: $body" >&2
        return 1
    fi
    sed '$d' <<<"$body" | jq -r .id
}

# wait_state ID STATE [SECONDS]: polls until the task is in STATE.
wait_state() {
    local id=$1 want=$2 limit=${3:-120} i state
    for ((i = 0; i < limit * 5; i++)); do
        state=$(curl -s "$URL/v1/tasks/$id" | jq -r .state)
        [ "$state" = "$want" ] && return 0
        if [ "$state" = failed ] && [ "$want" != failed ]; then
            echo "task $id failed: $(curl -s "$URL/v1/tasks/$id" | jq -c .error)" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "task $id is '$state', not '$want' after ${limit}s" >&2
    return 1
}

# Media fixtures, generated at test time.
make_mp4() { # FILE SECONDS [SIZE]
    ffmpeg -v error -y -f lavfi -i "testsrc2=size=${3:-320x240}:rate=25" \
        -f lavfi -i "sine=frequency=440:sample_rate=48000" -t "$2" \
        -c:v libx264 -pix_fmt yuv420p -preset ultrafast -c:a aac -shortest \
        -metadata title="taskmill fixture" "$1"
}

make_mkv_multi() { # FILE: video + two audio tracks (aac, mp3) + a subrip subtitle + a chapter
    printf '1\n00:00:00,000 --> 00:00:01,500\nhello\n' >"$FIX/sub.srt"
    printf ';FFMETADATA1\ntitle=multi\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1000\ntitle=One\n' >"$FIX/meta.txt"
    ffmpeg -v error -y -f lavfi -i "testsrc2=size=320x240:rate=25" \
        -f lavfi -i "sine=frequency=440:sample_rate=48000" \
        -f lavfi -i "sine=frequency=660:sample_rate=44100" -i "$FIX/sub.srt" -i "$FIX/meta.txt" \
        -map 0:v -map 1:a -map 2:a -map 3:s -map_metadata 4 -map_chapters 4 -t 2 \
        -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a:0 aac -c:a:1 libmp3lame -c:s srt \
        -metadata:s:a:0 language=eng -metadata:s:a:1 language=deu "$1"
}

probe() { # FILE -> JSON
    ffprobe -v error -print_format json -show_format -show_streams -show_chapters "$1"
}

# Nothing may appear outside the root: every file in the temp dir that is not the root, the
# fixtures, the logs or the test's own work area was written by someone who should not have.
files_outside_root() {
    find "$T" -path "$ROOT" -prune -o -path "$FIX" -prune -o -path "$TM_LOG" -prune \
        -o -path "$W" -prune -o -type f ! -path "$TM_CONF" -print
}
