# scripts/daemons.sh - start and stop the five daemons outside systemd, in the right order.
# Sourced by scripts/run and the integration tests. Needs: TM_BIN (build dir), TM_CONF (config
# file), TM_LOG (folder for NAME.log). Each daemon runs in its own session (setsid) so a Ctrl-C
# in the terminal reaches only this script, which then stops them in order. TM_START_TIMEOUT
# (seconds, default 10) is how long tm_start waits for one daemon to say it started (bench/run
# raises it for its start-ups with many stored tasks).

TM_ORDER_START=(init queue convert callback rest)
TM_ORDER_STOP=(rest cluster callback convert queue init) # cluster: only when a test started it
declare -A TM_PID

# tm_start NAME: starts taskmill-NAME and waits until it says it started (after READY=1).
tm_start() {
    local name=$1 log="$TM_LOG/$1.log" i limit=${TM_START_TIMEOUT:-10}
    : >>"$log"
    local before
    before=$(grep -c ': started (config' "$log" || true)
    setsid "$TM_BIN/taskmill-$name" --config "$TM_CONF" 2>>"$log" &
    TM_PID[$name]=$!
    for i in $(seq 1 $((limit * 20))); do
        if [ "$(grep -c ': started (config' "$log" || true)" -gt "$before" ]; then
            return 0
        fi
        if ! kill -0 "${TM_PID[$name]}" 2>/dev/null; then
            echo "taskmill-$name failed to start:" >&2
            tail -n 20 "$log" >&2
            return 1
        fi
        sleep 0.05
    done
    echo "taskmill-$name did not become ready in $limit s" >&2
    return 1
}

# tm_stop NAME: SIGTERM and wait; returns the daemon's exit status.
tm_stop() {
    local name=$1 pid=${TM_PID[$1]:-} rc=0
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || rc=$?
    unset "TM_PID[$name]"
    return $rc
}

tm_start_all() {
    local n
    for n in "${TM_ORDER_START[@]}"; do tm_start "$n" || return 1; done
}

tm_stop_all() {
    local n rc=0
    for n in "${TM_ORDER_STOP[@]}"; do tm_stop "$n" || rc=1; done
    return $rc
}

# tm_write_conf FILE ROOT PORT [extra INI lines...]: a config for a local data root.
tm_write_conf() {
    local file=$1 root=$2 port=$3
    shift 3
    mkdir -p "$root"
    {
        echo "[paths]"
        echo "root = $root"
        echo "runtime_dir = $root/run"
        echo "[rest]"
        echo "listen = 127.0.0.1:$port"
        printf '%s\n' "$@"
    } >"$file"
}
