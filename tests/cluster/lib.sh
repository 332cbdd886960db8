# tests/cluster/lib.sh - the world of the cluster test: a switch namespace holding bridge br0
# and one network namespace per host (the server, nodeA, nodeB, nodeC) on 10.250.0.0/24, each
# joined to the bridge by a veth pair; nats-server from the Debian package in the server's
# namespace with JetStream file storage and user/password auth; the five daemons and
# taskmill-cluster in the server's namespace (through nsenter wrappers in TM_BIN, which keep the
# pid, so scripts/daemons.sh works unchanged); taskmill-node per node namespace. It sources
# tests/it/lib.sh (temp root, api/submit/wait_state/jget, fixtures, its EXIT trap) and adds
# test_cleanup, which that trap calls: every node, nats-server and namespace this run made goes,
# also on failure. Skips (exit 77) when not root, or when network namespaces or nats-server are
# unavailable. Nothing is added to the host's own namespace: no address, no interface.
set -euo pipefail
: "${TASKMILL_BUILD:?set TASKMILL_BUILD to the build directory}"
: "${TASKMILL_SRC:?set TASKMILL_SRC to the source directory}"

# --- skips, before tests/it/lib.sh installs a trap that would turn exit 77 into a failure ---
cl_skip() {
    echo "skipped: $*"
    exit 77
}
[ "$(id -u)" -eq 0 ] || cl_skip "needs root for network namespaces"
command -v ip >/dev/null || cl_skip "no ip (iproute2)"
command -v nsenter >/dev/null || cl_skip "no nsenter (util-linux)"
NATS_SERVER=$(command -v nats-server || true)
[ -n "$NATS_SERVER" ] || [ ! -x /usr/sbin/nats-server ] || NATS_SERVER=/usr/sbin/nats-server
[ -n "$NATS_SERVER" ] || cl_skip "no nats-server (Debian package nats-server)"
CL_ID=tmc-$$ # prefix of every namespace of this run; the pid keeps runs apart
ip netns add "$CL_ID-probe" 2>/dev/null || cl_skip "ip netns add does not work here"
ip netns del "$CL_ID-probe"

. "$TASKMILL_SRC/tests/it/lib.sh"
# A signal ends the test through the EXIT trap, so the cleanup runs then too.
trap 'exit 130' INT
trap 'exit 143' TERM

# --- addresses and names ---------------------------------------------------------------------
SRV_IP=10.250.0.1
PORT=8080 # free by construction: the server's namespace is ours alone
URL=http://$SRV_IP:$PORT
NPORT=4222 # nats clients
MPORT=8222 # nats monitoring (jsz, healthz), on the server namespace's loopback only
NATS_URL=nats://$SRV_IP:$NPORT
NATS_USER=taskmill
NATS_PASS=$(openssl rand -hex 16)
NS_SW=$CL_ID-sw   # the switch: bridge br0 and the switch ends of the veths
NS_SRV=$CL_ID-srv # the server: the daemons, taskmill-cluster, nats-server, the test's curl
declare -A CL_ADDR=([srv]=$SRV_IP [nodeA]=10.250.0.11 [nodeB]=10.250.0.12 [nodeC]=10.250.0.13)
CL_NS=()           # namespaces made so far, for the cleanup
declare -A NODE_PID # node name -> pid of its taskmill-node
NATS_PID=""
LOCAL_HOST=$(uname -n) # the local pool's host in history and /v1/workers

# ns_of HOST: the namespace of srv or a node.
ns_of() { if [ "$1" = srv ]; then echo "$NS_SRV"; else echo "$CL_ID-$1"; fi; }

# in_ns HOST COMMAND...: runs COMMAND in HOST's network namespace (nsenter execs: same pid).
in_ns() {
    local ns
    ns=$(ns_of "$1")
    shift
    nsenter --net="/run/netns/$ns" "$@"
}

# The test's curl (api, submit, wait_state, jget of tests/it/lib.sh) runs on the server host.
curl() { nsenter --net="/run/netns/$NS_SRV" curl "$@"; }

# --- topology --------------------------------------------------------------------------------

# net_host HOST: a namespace for HOST, its eth0 with HOST's address, plugged into br0 as p-HOST.
net_host() {
    local h=$1 ns
    ns=$(ns_of "$h")
    ip netns add "$ns"
    CL_NS+=("$ns")
    ip -n "$ns" link set lo up
    ip -n "$NS_SW" link add "p-$h" type veth peer name eth0 netns "$ns"
    ip -n "$NS_SW" link set "p-$h" master br0 up
    ip -n "$ns" addr add "${CL_ADDR[$h]}/24" dev eth0
    ip -n "$ns" link set eth0 up
}

# net_up NODE...: the switch, the server host and the named node hosts.
net_up() {
    local h
    cl_sweep_stale
    ip netns add "$NS_SW"
    CL_NS+=("$NS_SW")
    ip -n "$NS_SW" link set lo up
    ip -n "$NS_SW" link add br0 type bridge
    ip -n "$NS_SW" link set br0 up
    for h in srv "$@"; do net_host "$h"; done
}

# net_cut HOST / net_heal HOST: the partition: HOST's port on the switch goes down / up.
net_cut() { ip -n "$NS_SW" link set "p-$1" down; }
net_heal() { ip -n "$NS_SW" link set "p-$1" up; }

# reach HOST ADDR PORT: a TCP connection from HOST to ADDR:PORT opens within 2 s (no ping here).
reach() {
    in_ns "$1" timeout 2 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null
}
# unreachable HOST ADDR PORT: the opposite, for check.
unreachable() { ! reach "$@"; }

# cl_sweep_stale: namespaces left by an earlier run that was killed before its trap ran (its
# pid is gone) and that hold no process any more are removed. Others are left alone.
cl_sweep_stale() {
    local ns pid
    for ns in $(ip netns list | awk '{print $1}' | grep -E '^tmc-[0-9]+-' || true); do
        pid=${ns#tmc-}
        pid=${pid%%-*}
        kill -0 "$pid" 2>/dev/null && continue
        [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] || continue
        echo "removing the stale namespace $ns of an earlier run"
        ip netns del "$ns" || true
    done
}

# net_down: stray processes in our namespaces (all of them started by this run) are reported
# and killed by pid, then every namespace goes (its veth ends with it). Returns 1 on strays.
net_down() {
    local ns pid rc=0
    for ns in "${CL_NS[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null || true); do
            echo "stray process in $ns: $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2
            kill -KILL "$pid" 2>/dev/null || true
            rc=1
        done
    done
    for ns in "${CL_NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    CL_NS=()
    return $rc
}

# --- processes -------------------------------------------------------------------------------

# alive PID: one of the process's threads still runs (is not a zombie). The main thread of a
# killed multi-threaded process (nats-server) is a zombie before its other threads have gone,
# and until the last one has, its sockets are open: a port it listened on still connects.
alive() {
    local t s
    for t in /proc/"$1"/task/*/stat; do
        s=$(cat "$t" 2>/dev/null) || continue
        s=${s##*) }
        [ "${s%% *}" = Z ] || return 0
    done
    return 1
}

# reap PID SIGNAL SECONDS: sends SIGNAL (none when "-"), waits up to SECONDS for the process to
# end (SIGKILL after that, noted in REAP_KILLED=1), and sets REAP_RC to its exit status. A
# process sent SIGKILL on purpose is disowned first: bash reaps it without a "Killed" line.
reap() {
    local pid=$1 sig=$2 limit=$3 deadline
    deadline=$((SECONDS + limit))
    REAP_RC=0 REAP_KILLED=0
    [ "$sig" != KILL ] || disown "$pid" 2>/dev/null || true
    [ "$sig" = - ] || kill "-$sig" "$pid" 2>/dev/null || true
    while alive "$pid" && [ $SECONDS -lt "$deadline" ]; do sleep 0.1; done
    if alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        REAP_KILLED=1
    fi
    wait "$pid" 2>/dev/null || REAP_RC=$?
}

# count_in FILE PATTERN: lines of FILE holding the fixed string PATTERN (0 when none).
count_in() {
    local n
    n=$(grep -cF -- "$2" "$1" 2>/dev/null) || true
    echo "${n:-0}"
}

# started_in LOG PID BEFORE SECONDS: waits until LOG holds more ': started (config' lines than
# BEFORE while PID lives. Says why on failure.
started_in() {
    local log=$1 pid=$2 before=$3 deadline=$((SECONDS + $4))
    while [ "$(count_in "$log" ': started (config')" -le "$before" ]; do
        if ! alive "$pid"; then
            echo "$(basename "$log" .log) ended before it started:" >&2
            tail -n 20 "$log" >&2
            return 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            echo "$(basename "$log" .log) did not start in $4 s" >&2
            return 1
        fi
        sleep 0.1
    done
}

# --- nats-server -----------------------------------------------------------------------------

# nats_conf: its config: clients on the server's address, monitoring on its loopback, JetStream
# on files under $T/nats (kept across restarts), one user.
nats_conf() {
    mkdir -p "$T/nats"
    cat >"$T/nats.conf" <<EOF
server_name: taskmill_test
listen: "$SRV_IP:$NPORT"
http: "127.0.0.1:$MPORT"
jetstream {
  store_dir: "$T/nats"
}
authorization {
  users = [
    {user: "$NATS_USER", password: "$NATS_PASS"}
  ]
}
EOF
}

# nats_start: starts nats-server in the server's namespace (log: $TM_LOG/nats.log) and waits
# until it is ready: its healthz (JetStream included) answers 200 and a node's side can connect.
nats_start() {
    local log=$TM_LOG/nats.log before deadline=$((SECONDS + 15))
    [ -f "$T/nats.conf" ] || nats_conf
    before=$(count_in "$log" 'Server is ready')
    setsid nsenter --net="/run/netns/$NS_SRV" "$NATS_SERVER" -c "$T/nats.conf" >>"$log" 2>&1 </dev/null &
    NATS_PID=$!
    until [ "$(count_in "$log" 'Server is ready')" -gt "$before" ] && nats_healthy; do
        if ! alive "$NATS_PID" || [ $SECONDS -ge $deadline ]; then
            echo "nats-server did not become ready:" >&2
            tail -n 20 "$log" >&2
            return 1
        fi
        sleep 0.1
    done
}

# nats_healthy: the monitoring healthz answers 200 (it checks JetStream too).
nats_healthy() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/healthz")" = 200 ]
}

# nats_stop: SIGINT, its clean stop; returns its exit status (0 expected).
nats_stop() {
    [ -n "$NATS_PID" ] || return 0
    reap "$NATS_PID" INT 15
    NATS_PID=""
    return $REAP_RC
}

# nats_kill: kill -9, and waits until it is gone.
nats_kill() {
    [ -n "$NATS_PID" ] || return 0
    reap "$NATS_PID" KILL 10
    NATS_PID=""
}

# jsz: JetStream's own view of streams and consumers, as JSON (the monitoring endpoint).
jsz() {
    curl -s "http://127.0.0.1:$MPORT/jsz?accounts=true&streams=true&consumers=true&config=true"
}

# --- the server --------------------------------------------------------------------------------

# srv_wrappers: TM_BIN becomes a folder of wrappers that exec each daemon of the build in the
# server's namespace, so tm_start/tm_stop of scripts/daemons.sh keep working with real pids.
srv_wrappers() {
    local n
    mkdir -p "$T/bin"
    for n in init queue convert callback rest cluster; do
        printf '#!/bin/sh\n# taskmill-%s in the server namespace (nsenter execs: same pid)\nexec nsenter --net=/run/netns/%s %q "$@"\n' \
            "$n" "$NS_SRV" "$TASKMILL_BUILD/taskmill-$n" >"$T/bin/taskmill-$n"
        chmod 755 "$T/bin/taskmill-$n"
    done
    TM_BIN=$T/bin
}

# tok: a new random token. tok_hash TOKEN: its line's hash in tokens_file.
tok() { openssl rand -hex 32; }
tok_hash() { printf %s "$1" | sha256sum | cut -d' ' -f1; }

# --- nodes -----------------------------------------------------------------------------------

# node_conf NAME TOKEN [INI lines...]: NAME's config ($T/NAME.conf), its root $T/NAME.
node_conf() {
    local name=$1 token=$2
    shift 2
    mkdir -p "$T/$name"
    {
        echo "[paths]"
        echo "root = $T/$name"
        echo "runtime_dir = $T/$name/run"
        echo "[node]"
        echo "server = $URL"
        echo "token = $token"
        echo "workers = 1"
        echo "host = $name"
        echo "nats_url = $NATS_URL"
        echo "nats_user = $NATS_USER"
        echo "nats_password = $NATS_PASS"
        echo "[convert]"
        echo "preset = ultrafast"
        printf '%s\n' "$@"
    } >"$T/$name.conf"
    chmod 600 "$T/$name.conf"
}

# node_spawn NAME: starts NAME's taskmill-node in its namespace, log $TM_LOG/NAME.log.
node_spawn() {
    local name=$1
    : >>"$TM_LOG/$name.log"
    setsid nsenter --net="/run/netns/$(ns_of "$name")" "$TASKMILL_BUILD/taskmill-node" \
        --config "$T/$name.conf" >>"$TM_LOG/$name.log" 2>&1 </dev/null &
    NODE_PID[$name]=$!
}

# node_start NAME: node_spawn, then waits until it says it started.
node_start() {
    local name=$1 before
    before=$(count_in "$TM_LOG/$1.log" ': started (config')
    node_spawn "$name"
    started_in "$TM_LOG/$name.log" "${NODE_PID[$name]}" "$before" 20
}

# node_stop NAME: SIGTERM; returns its exit status (0 expected; 137 when it had to be killed).
node_stop() {
    local pid=${NODE_PID[$1]:-}
    [ -n "$pid" ] || return 0
    reap "$pid" TERM 20
    unset "NODE_PID[$1]"
    [ $REAP_KILLED = 0 ] || echo "$1 did not stop within 20 s of SIGTERM" >&2
    return $REAP_RC
}

# node_kill NAME: kill -9, and waits until it is gone.
node_kill() {
    local pid=${NODE_PID[$1]:-}
    [ -n "$pid" ] || return 0
    reap "$pid" KILL 10
    unset "NODE_PID[$1]"
}

# node_exit NAME SECONDS: waits for NAME to end by itself; sets REAP_RC (SIGKILL after SECONDS).
node_exit() {
    reap "${NODE_PID[$1]}" - "$2"
    unset "NODE_PID[$1]"
}

# --- cleanup, called by tests/it/lib.sh's EXIT trap after the daemons stopped ------------------
# TASKMILL_CLUSTER_KEEP_LOGS=DIR keeps a copy of every log (daemons, nodes, nats-server) there.
test_cleanup() {
    local n
    if [ -n "${TASKMILL_CLUSTER_KEEP_LOGS:-}" ]; then
        { mkdir -p "$TASKMILL_CLUSTER_KEEP_LOGS" && cp -r "$TM_LOG"/. "$TASKMILL_CLUSTER_KEEP_LOGS"/; } || true
    fi
    for n in "${!NODE_PID[@]}"; do node_stop "$n" || true; done
    nats_stop || true
    net_down || fail "a process was left in a test namespace (killed)"
    for n in $(ip netns list | awk '{print $1}'); do
        [[ $n != "$CL_ID"-* ]] || fail "namespace $n is still there"
    done
}
