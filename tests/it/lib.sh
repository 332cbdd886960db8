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
# Extra curl options for api, submit and wait_state (test_tls adds its --cacert).
CURL_OPTS=()

# fail DESCRIPTION: counts a failure. The count is also kept in a file, so a failure found in a
# subshell (a helper called inside $(...)) is not lost when the subshell ends.
fail() {
    echo "FAIL: $*" >&2
    FAILS=$((FAILS + 1))
    echo x >>"$W/.failures"
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
    if [ -f "$W/.failures" ]; then FAILS=$(wc -l <"$W/.failures"); fi
    if ! tm_stop_all; then
        fail "a daemon did not exit cleanly"
    fi
    stop_receivers
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

# api METHOD PATH [curl args...]: prints the body, sets STATUS (000 when no answer came).
# The body file is emptied first, so an earlier answer can never stand in for this one. A
# transport error (curl cannot connect, the connection is closed before an answer, a timeout)
# fails the test with curl's message, unless the caller accepts one by setting
# API_TRANSPORT_OK=1 for the call (API_TRANSPORT_OK=1 api ...); CURL_RC keeps curl's exit status.
api() {
    local method=$1 path=$2 body=$W/body.$BASHPID err=$W/curl_err.$BASHPID
    shift 2
    local out
    : >"$body"
    CURL_RC=0
    out=$(curl -s -S -o "$body" -w '%{http_code}' -X "$method" "${CURL_OPTS[@]}" "$URL$path" "$@" \
        2>"$err") || CURL_RC=$?
    STATUS=${out:-000}
    if [ "$CURL_RC" -ne 0 ] && [ "${API_TRANSPORT_OK:-0}" != 1 ]; then
        fail "$method $path: no HTTP answer (curl exit $CURL_RC, status $STATUS): $(tr '\n' ' ' <"$err")"
    fi
    cat "$body"
    rm -f "$body" "$err"
}

# jget PATH FILTER [curl args...]: GET PATH; prints `jq -r FILTER` of the body when the answer is
# 200, else "HTTP <status>", which no check expects: an error body never passes for a value
# (jq gives null or 0 on one).
jget() {
    local path=$1 filter=$2 out=$W/jget.$BASHPID
    shift 2
    api GET "$path" "$@" >"$out"
    if [ "$STATUS" = 200 ]; then jq -r "$filter" "$out"; else echo "HTTP $STATUS"; fi
    rm -f "$out"
}

# submit FILE [curl -F args...]: posts a task, prints its id.
submit() {
    local file=$1
    shift
    local body
    body=$(curl -s -S -w '\n%{http_code}' "${CURL_OPTS[@]}" -F task_type=convert_video_to_libx265 \
        -F "file_path=$(dirname "$file")" -F "file_data=@$file" "$@" "$URL/v1/tasks")
    if [ "$(tail -n 1 <<<"$body")" != 201 ]; then
        echo "submit failed: $body" >&2
        return 1
    fi
    sed '$d' <<<"$body" | jq -r .id
}

# wait_state ID STATE [SECONDS]: polls until the task is in STATE. Fails at once when the task
# reached another final state (done or failed); after SECONDS it fails saying what the last GET
# answered (its HTTP status, curl's exit status, the state in the body).
wait_state() {
    local id=$1 want=$2 limit=${3:-120} state st rc body=$W/wait_state.$BASHPID
    local deadline=$((SECONDS + limit))
    while :; do
        rc=0
        st=$(curl -s -o "$body" -w '%{http_code}' "${CURL_OPTS[@]}" "$URL/v1/tasks/$id") || rc=$?
        state=$( ([ "$st" = 200 ] && jq -r .state "$body") 2>/dev/null || echo "?")
        [ "$state" = "$want" ] && { rm -f "$body"; return 0; }
        if [ "$state" = failed ] || [ "$state" = done ]; then
            echo "task $id is '$state', not '$want': $(jq -c .error "$body")" >&2
            rm -f "$body"
            return 1
        fi
        [ $SECONDS -ge $deadline ] && break
        sleep 0.2
    done
    echo "task $id is not '$want' after ${limit}s: the last GET answered HTTP $st (curl exit" \
        "$rc), state '$state': $(head -c 300 "$body" | tr '\n' ' ')" >&2
    rm -f "$body"
    return 1
}

# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds or the deadline.
wait_for() {
    local limit=$1 i
    shift
    for ((i = 0; i < limit * 10; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

# judge_error DESCRIPTION STATUS CODE: the answer in $STATUS, $W/err (body) and $W/hdr
# (headers): the status first, then .error.code, a non-empty .error.message, a JSON type.
judge_error() {
    local what=$1 want_status=$2 want_code=$3 code msg bad=
    if [ "$STATUS" != "$want_status" ]; then
        bad="status $STATUS, not $want_status"
    else
        code=$(jq -r '.error.code // empty' "$W/err" 2>/dev/null || true)
        msg=$(jq -r '.error.message | select(type == "string")' "$W/err" 2>/dev/null || true)
        if [ "$code" != "$want_code" ]; then
            bad="error.code '$code', not '$want_code'"
        elif [ -z "$msg" ]; then
            bad="empty error.message"
        elif ! grep -qi '^content-type: application/json' "$W/hdr"; then
            bad="Content-Type is '$(hdr_value "$W/hdr" content-type)', not application/json"
        fi
    fi
    if [ -z "$bad" ]; then
        ok "$what -> $STATUS $code ($msg)"
    else
        fail "$what: $bad; body: $(head -c 300 "$W/err" | tr '\n' ' ')"
    fi
}

# expect_error DESCRIPTION STATUS CODE METHOD PATH [curl args...]: api, then judge_error.
expect_error() {
    local what=$1 want_status=$2 want_code=$3
    shift 3
    : >"$W/hdr"
    api "$@" -D "$W/hdr" >"$W/err" # api itself fails the test when no answer came
    judge_error "$what" "$want_status" "$want_code"
}

# hdr_value FILE NAME: the value of header NAME (case-insensitive) in a curl -D dump.
hdr_value() {
    grep -i "^$2:" "$1" | head -n 1 | cut -d: -f2- | sed 's/^ *//; s/\r$//'
}

# epoch TIME: an RFC 3339 time (as the API writes it) in seconds since 1970, with fractions.
epoch() { date -d "$1" +%s.%N; }
# gap_between A B LO HI: LO <= (time B - time A) < HI, in seconds; A and B are RFC 3339 times or
# epoch seconds; anything else (null, empty) fails.
gap_between() {
    local a=$1 b=$2
    [ -n "$a" ] && [ -n "$b" ] || return 1
    [[ $a =~ ^[0-9.]+$ ]] || a=$(epoch "$a") || return 1 # not a time (null): no gap
    [[ $b =~ ^[0-9.]+$ ]] || b=$(epoch "$b") || return 1
    awk -v a="$a" -v b="$b" -v lo="$3" -v hi="$4" 'BEGIN { d = b - a; exit !(d >= lo && d < hi) }'
}

# json_post BODY [curl args...]: POST /v1/tasks with a JSON body (a type without a file).
json_post() {
    local body=$1
    shift
    api POST /v1/tasks -H 'Content-Type: application/json' --data-binary "$body" "$@"
}

# start_receiver NAME [FAILS] [MODE]: a receiver.py on loopback logging to $W/NAME.log (made
# empty first); sets RPORT. MODE: any, redirect=URL or hang (see receiver.py). stop_receivers
# ends them; the trap does too.
RPIDS=()
start_receiver() {
    local name=$1 i
    python3 "$TASKMILL_SRC/tests/it/receiver.py" "$W/$name.port" "$W/$name.log" "${2:-0}" \
        ${3:+"$3"} &
    RPIDS+=($!)
    for ((i = 0; i < 100; i++)); do
        [ -s "$W/$name.port" ] && break
        sleep 0.05
    done
    RPORT=$(cat "$W/$name.port")
    : >>"$W/$name.log"
}
stop_receivers() {
    local p
    for p in "${RPIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    RPIDS=()
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
