#!/usr/bin/env bash
# test_cluster.sh - conversion nodes through NATS JetStream (issue 12), on separate hosts made of
# network namespaces (tests/cluster/lib.sh): the server (five daemons + taskmill-cluster +
# nats-server) and nodes A and B, each with one worker, beside a local pool of one. Five
# scenarios on one running cluster, in order:
#   1. spread: six clips finish, on nodeA, nodeB and the local pool alike;
#   2. kill -9 of a node mid-encode: another node finishes the task (interruptions >= 1, one
#      output, one done attempt);
#   3. kill -9 of nats-server mid-run, restarted on the same store: every task finishes;
#   4. nodeA cut off (link down) mid-encode: the task is redelivered to nodeB and done; once the
#      link is back, nodeA's late result is refused, the task and its output stay as they were,
#      and nodeA takes work again;
#   5. a node with a wrong token (unknown, or a user's) exits non-zero, refused, having taken no work;
#   6. rest's fences around a task running on a node: only that node's token fetches its input or
#      uploads a result, only for its delivery and with the right SHA-256; a node token can do
#      nothing else; then DELETE of the task stops it on the node within seconds.
# Then nothing is left pending in JetStream or on a node, and the nodes, taskmill-cluster and
# nats-server stop cleanly (exit 0). Needs root (skipped otherwise).
. "$(dirname "$0")/lib.sh"

ACK_WAIT=6 # seconds; JetStream redelivers a task whose node stopped acking after this

# --- the programs under test are part of the build: missing is a failure, not a skip ---
for p in taskmill-cluster taskmill-node; do
    if [ ! -x "$TASKMILL_BUILD/$p" ]; then
        fail "$TASKMILL_BUILD/$p is not built"
        exit 1
    fi
done

# --- fixtures: short clips for throughput, long ones that keep a node busy for seconds ---
make_mp4 "$FIX/short.mp4" 3
make_mp4 "$FIX/mid.mp4" 12 640x360
make_mp4 "$FIX/long.mp4" 30 640x360

# --- the cluster: hosts, nats-server, tokens, the server's daemons, two nodes ---
net_up nodeA nodeB nodeC
nats_start
ADMIN=$(tok) NODE_A=$(tok) NODE_B=$(tok) ALICE=$(tok)
{
    echo "root admin $(tok_hash "$ADMIN")"
    echo "nodeA node $(tok_hash "$NODE_A")"
    echo "nodeB node $(tok_hash "$NODE_B")"
    echo "alice user $(tok_hash "$ALICE")"
} >"$T/tokens"
chmod 600 "$T/tokens"
srv_wrappers
# write_conf leaves us in [convert]: the local pool has one worker.
write_conf "workers = 1" "[rest]" "listen = $SRV_IP:$PORT" "tokens_file = $T/tokens" \
    "[cluster]" "nats_url = $NATS_URL" "nats_user = $NATS_USER" "nats_password = $NATS_PASS" \
    "ack_wait = $ACK_WAIT" "max_deliver = 3"
tm_start_all
tm_start cluster
CURL_OPTS=(-H "Authorization: Bearer $ADMIN") # every api/submit/wait_state call is the admin's
node_conf nodeA "$NODE_A"
node_conf nodeB "$NODE_B"
node_start nodeA
node_start nodeB

# --- helpers ---------------------------------------------------------------------------------

# admin_post PATH: POST PATH; anything but 200 fails the test.
admin_post() {
    api POST "$1" >"$W/out"
    [ "$STATUS" = 200 ] || fail "POST $1: HTTP $STATUS: $(head -c 300 "$W/out")"
}

# submit_n FILE N: N tasks of FILE; their ids in IDS.
submit_n() {
    local file=$1 n=$2 i id
    IDS=()
    for ((i = 1; i <= n; i++)); do
        if id=$(submit "$file" -F "file_name=$(basename "$file" .mp4)-$i.mp4"); then
            IDS+=("$id")
        else
            fail "submit $file ($i of $n)"
        fi
    done
}

# submit_held FILE N: submit_n while the queue drains, then resumes, so the tasks are handed
# out together (one to each free slot).
submit_held() {
    admin_post /v1/admin/drain
    submit_n "$@"
    admin_post /v1/admin/resume
}

# wait_done SECONDS ID...: every task is done within one deadline of SECONDS.
wait_done() {
    local deadline=$((SECONDS + $1)) id late=""
    shift
    for id in "$@"; do
        wait_state "$id" done $((deadline > SECONDS ? deadline - SECONDS : 1)) || late+=" $id"
    done
    [ -z "$late" ] || { echo "not done:$late" >&2; return 1; }
}

# task_json ID: GET /v1/tasks/ID into $W/task.json; anything but 200 fails.
task_json() {
    api GET "/v1/tasks/$1" >"$W/task.json"
    [ "$STATUS" = 200 ] || { echo "GET /v1/tasks/$1: HTTP $STATUS" >&2; return 1; }
}

# done_hosts ID: the hosts of the task's done attempts (space-separated).
done_hosts() {
    task_json "$1" && jq -r '[.history[] | select(.outcome == "done") | .host] | join(" ")' "$W/task.json"
}

# busy_task HOST ID...: the task among the IDs that GET /v1/workers shows busy on HOST.
busy_task() {
    local host=$1 t id
    shift
    for t in $(jget /v1/workers ".workers[] | select(.host == \"$host\" and .state == \"busy\") | .task_id"); do
        for id in "$@"; do [ "$t" != "$id" ] || { echo "$t"; return 0; }; done
    done
    return 1
}

# wait_busy "HOST..." SECONDS ID...: waits until one of the HOSTs is busy with one of the IDs;
# sets BUSY_HOST and BUSY (the task).
wait_busy() {
    local hosts=$1 deadline=$((SECONDS + $2)) h
    shift 2
    while [ $SECONDS -lt $deadline ]; do
        for h in $hosts; do
            if BUSY=$(busy_task "$h" "$@"); then
                BUSY_HOST=$h
                return 0
            fi
        done
        sleep 0.2
    done
    echo "none of $hosts was busy with one of $* within $2 s; /v1/workers:" \
        "$(api GET /v1/workers | head -c 800)" >&2
    return 1
}

# deliveries NODE ID: the delivery numbers NODE's log records for ID ("ID: took delivery=N").
deliveries() {
    grep -oE "$2: took delivery=[0-9]+" "$TM_LOG/$1.log" 2>/dev/null | sed 's/.*=//' | tr '\n' ' ' || true
}

# redelivered_to NODE ID: NODE took ID at a delivery after the first.
redelivered_to() {
    local n
    for n in $(deliveries "$1" "$2"); do [ "$n" -lt 2 ] || return 0; done
    echo "$1 took $2 at deliveries '$(deliveries "$1" "$2")', none a redelivery" >&2
    return 1
}

# result_ok ID: done; one output file in done/ID (no partial beside it); the API's sha256, the
# downloaded result and the file on disk agree; the result is HEVC; one done attempt in the
# history; the queue moved it to done once. Says what is wrong.
result_ok() {
    local id=$1 dir=$ROOT/data/done/$1 bad="" n want got disk codec
    task_json "$id" || return 1
    [ "$(jq -r .state "$W/task.json")" = done ] || bad+=" state=$(jq -r .state "$W/task.json")"
    n=$(find "$dir" -maxdepth 1 -name 'output.*' 2>/dev/null | wc -l) || true
    [ "$n" = 1 ] || bad+=" output-files=$n"
    n=$(jq '[.history[] | select(.outcome == "done")] | length' "$W/task.json")
    [ "$n" = 1 ] || bad+=" done-attempts=$n"
    n=$(count_in "$TM_LOG/queue.log" "$id: moved from=in_progress to=done")
    [ "$n" = 1 ] || bad+=" moves-to-done=$n"
    want=$(jq -r '.result.sha256 // "none"' "$W/task.json")
    api GET "/v1/tasks/$id/result" >"$W/result.bin"
    [ "$STATUS" = 200 ] || bad+=" GET-result=HTTP-$STATUS"
    got=$(sha256sum <"$W/result.bin" | cut -d' ' -f1) || true
    disk=$(cat "$dir"/output.* 2>/dev/null | sha256sum | cut -d' ' -f1) || true
    [ "$got:$disk" = "$want:$want" ] || bad+=" sha256: api=$want download=$got disk=$disk"
    codec=$(ffprobe -v error -select_streams v -show_entries stream=codec_name -of csv=p=0 \
        "$W/result.bin" 2>/dev/null || true)
    [ "$codec" = hevc ] || bad+=" codec='$codec'"
    [ -z "$bad" ] || { echo "$id:$bad" >&2; return 1; }
}

# results_ok ID...: result_ok for each task.
results_ok() {
    local id rc=0
    for id in "$@"; do result_ok "$id" || rc=1; done
    return $rc
}

# interruptions ID: the task's interruptions count.
interruptions() { task_json "$1" && jq -r '.interruptions // "missing"' "$W/task.json"; }

# lacks WORD TEXT: TEXT does not hold the word WORD.
lacks() { ! grep -qw -- "$1" <<<"$2"; }

# not_yet COMMAND...: COMMAND fails (a check that something has not happened).
not_yet() { ! "$@"; }

# at_least N VALUE: VALUE is a number >= N.
at_least() { [[ $2 =~ ^[0-9]+$ ]] && [ "$2" -ge "$1" ]; }

# node_slots_listed: GET /v1/workers lists a slot of nodeA and one of nodeB.
node_slots_listed() {
    local hosts
    hosts=$(jget /v1/workers '[.workers[].host] | unique | join(" ")')
    [[ " $hosts " == *" nodeA "* && " $hosts " == *" nodeB "* ]]
}

# js_layout: "STREAM SUBJECTS CONSUMER ACK_WAIT_NS MAX_DELIVER" as nats-server reports them.
js_layout() {
    jsz | jq -r '.account_details[].stream_detail[]? | select(.name == "TASKMILL")
        | .name + " " + (.config.subjects | join(",")) + " "
          + ([.consumer_detail[]? | .name + " " + (.config.ack_wait | tostring) + " "
              + (.config.max_deliver | tostring)] | join(" "))'
}

# js_has_stream: nats-server knows the stream TASKMILL.
js_has_stream() { [ -n "$(js_layout)" ]; }

# js_idle: the consumer "workers" has nothing pending and nothing awaiting an ack.
js_idle() {
    [ "$(jsz | jq -r '.account_details[].stream_detail[]? | select(.name == "TASKMILL")
        | .consumer_detail[]? | select(.name == "workers")
        | "\(.num_pending) \(.num_ack_pending)"')" = "0 0" ]
}

# node_work_left NODE: what NODE still keeps in ROOT/node/in_progress.
node_work_left() { find "$T/$1/node/in_progress" -mindepth 1 -maxdepth 1 2>/dev/null || true; }
nodes_clean() { [ -z "$(node_work_left nodeA)$(node_work_left nodeB)" ]; }

# node_idle HOST: GET /v1/workers shows an idle slot of HOST.
node_idle() {
    [ -n "$(jget /v1/workers ".workers[] | select(.host == \"$1\" and .state == \"idle\") | .slot")" ]
}

# late_refused ID NODE: the server refused NODE's late result for ID, by either side's log.
late_refused() {
    grep -qF "$1: refused a result from $2" "$TM_LOG/cluster.log" ||
        grep -qF "$1: discarded" "$TM_LOG/$2.log"
}

# --- 1. spread ---------------------------------------------------------------------------------
scenario_spread() {
    local id h hosts=""
    echo "--- 1. six clips spread over nodeA, nodeB and the local pool"
    check "GET /v1/workers lists the slots of nodeA and nodeB" wait_for 20 node_slots_listed
    submit_held "$FIX/short.mp4" 6
    check "the six clips are done" wait_done 90 "${IDS[@]}"
    check "each has one HEVC output, one done attempt, the same sha256 everywhere" results_ok "${IDS[@]}"
    for id in "${IDS[@]}"; do hosts+=" $(done_hosts "$id")"; done
    for h in nodeA nodeB "$LOCAL_HOST"; do
        check "$h converted some of them (hosts:$hosts)" grep -qw -- "$h" <<<"$hosts"
    done
    for id in "${IDS[@]}"; do
        h=$(done_hosts "$id")
        [ "$h" = "$LOCAL_HOST" ] && continue
        check "cluster.log: $id published and started on $h" \
            grep -qF "$id: started on $h delivery=" "$TM_LOG/cluster.log"
        check "  and published first" grep -qF "$id: published" "$TM_LOG/cluster.log"
    done
    check "NATS: stream TASKMILL on taskmill.work, consumer workers, AckWait $ACK_WAIT s, MaxDeliver 3 ($(js_layout))" \
        test "$(js_layout)" = "TASKMILL taskmill.work workers ${ACK_WAIT}000000000 3"
}

# --- 2. kill -9 of a node mid-encode -------------------------------------------------------------
scenario_node_kill() {
    local x victim other
    echo "--- 2. kill -9 of a node in the middle of an encode"
    submit_held "$FIX/long.mp4" 3
    if ! wait_busy "nodeA nodeB" 60 "${IDS[@]}"; then
        fail "no node started one of the long clips"
        return
    fi
    x=$BUSY victim=$BUSY_HOST
    other=nodeA
    [ "$victim" != nodeA ] || other=nodeB
    node_kill "$victim"
    ok "$victim killed (kill -9) while busy with $x"
    check "the three long clips are done" wait_done 150 "${IDS[@]}"
    check "$x was finished by $other (done on: $(done_hosts "$x"))" test "$(done_hosts "$x")" = "$other"
    check "  which took it as a redelivery" redelivered_to "$other" "$x"
    check "  its interruptions >= 1 ($(interruptions "$x"))" at_least 1 "$(interruptions "$x")"
    check "every clip has one output and one done attempt" results_ok "${IDS[@]}"
    check "$victim starts again" node_start "$victim"
}

# --- 3. kill -9 of nats-server mid-run ---------------------------------------------------------------
scenario_nats_kill() {
    echo "--- 3. kill -9 of nats-server in the middle of a run"
    submit_held "$FIX/mid.mp4" 6
    if ! wait_busy "nodeA nodeB" 60 "${IDS[@]}"; then
        fail "no node started one of the clips"
        return
    fi
    nats_kill
    ok "nats-server killed (kill -9) while $BUSY_HOST converted $BUSY"
    check "nats-server is down" unreachable nodeA "$SRV_IP" "$NPORT"
    sleep 2 # an outage the nodes and the bridge notice, not a wait for a condition
    check "nats-server restarts on the same store" nats_start
    check "the stream TASKMILL is still there" wait_for 10 js_has_stream
    check "the six clips are done" wait_done 150 "${IDS[@]}"
    check "each has one output and one done attempt" results_ok "${IDS[@]}"
}

# --- 4. partition of nodeA mid-encode --------------------------------------------------------------
scenario_partition() {
    local x sha id hosts=""
    echo "--- 4. nodeA cut off in the middle of an encode"
    submit_held "$FIX/long.mp4" 3
    if ! wait_busy nodeA 60 "${IDS[@]}"; then
        fail "nodeA did not start one of the long clips"
        return
    fi
    x=$BUSY
    net_cut nodeA
    ok "nodeA's link is down while it converts $x"
    check "$x is done without nodeA" wait_state "$x" done 120
    check "  by nodeB (done on: $(done_hosts "$x"))" test "$(done_hosts "$x")" = nodeB
    check "  which took it as a redelivery" redelivered_to nodeB "$x"
    check "  its interruptions >= 1 ($(interruptions "$x"))" at_least 1 "$(interruptions "$x")"
    check "  with one output and one done attempt" result_ok "$x"
    sha=$(jq -r .result.sha256 "$W/task.json")
    # Cut off, nodeA cannot have heard from the server yet: a refusal must come after the heal.
    check "nodeA has not had its result for $x refused while cut off" \
        not_yet late_refused "$x" nodeA
    net_heal nodeA
    ok "nodeA's link is up again"
    check "nodeA's late result for $x is refused (cluster.log or nodeA's log)" \
        wait_for 60 late_refused "$x" nodeA
    check "$x is still done with one output and one done attempt" result_ok "$x"
    check "  and its sha256 is unchanged" test "$(jq -r .result.sha256 "$W/task.json")" = "$sha"
    check "the other long clips are done" wait_done 120 "${IDS[@]}"
    check "  each with one output and one done attempt" results_ok "${IDS[@]}"
    # Its slot frees once the late upload was refused, and it reports itself idle again.
    check "nodeA, healed, shows an idle slot" wait_for 30 node_idle nodeA
    # Rounds of three clips until nodeA has converted one (at most four): the local pool and
    # nodeB may take a round's three between them.
    local round
    for round in 1 2 3 4; do
        submit_held "$FIX/short.mp4" 3
        check "round $round: three more clips are done" wait_done 90 "${IDS[@]}"
        for id in "${IDS[@]}"; do hosts+=" $(done_hosts "$id")"; done
        grep -qw nodeA <<<"$hosts" && break
    done
    check "nodeA, healed, takes work again (hosts:$hosts)" grep -qw nodeA <<<"$hosts"
}

# --- 5. a node with a wrong token ------------------------------------------------------------------
# refused_node LABEL TOKEN: nodeC with TOKEN exits by itself, non-zero, refused, before it
# started, having taken nothing; its log is kept as nodeC-LABEL.log.
refused_node() {
    local label=$1 log=$TM_LOG/nodeC.log
    node_conf nodeC "$2"
    : >"$log"
    node_spawn nodeC
    node_exit nodeC 30
    check "nodeC with $label exits by itself, non-zero (exit $REAP_RC)" \
        test "$REAP_KILLED:$((REAP_RC != 0))" = 0:1
    check "  saying the server refused the node token" grep -q "refused the node token" "$log"
    check "  before it started" test "$(count_in "$log" ': started (config')" = 0
    check "  having taken no delivery" test "$(count_in "$log" 'took delivery')" = 0
    mv "$log" "$TM_LOG/nodeC-$label.log"
}

scenario_bad_token() {
    local id hosts=""
    echo "--- 5. nodes with a wrong token"
    submit_n "$FIX/short.mp4" 3
    refused_node unknown-token "$(tok)"
    refused_node user-token "$ALICE"
    check "the clips submitted meanwhile are done" wait_done 90 "${IDS[@]}"
    for id in "${IDS[@]}"; do hosts+=" $(done_hosts "$id")"; done
    check "none on nodeC (hosts:$hosts)" lacks nodeC "$hosts"
    check "cluster.log never started a task on nodeC" test "$(count_in "$TM_LOG/cluster.log" 'started on nodeC')" = 0
}

# --- 6. the node endpoints' fences, and DELETE of a task running on a node -------------------------
# as TOKEN METHOD PATH [curl args...]: HTTP status into ST, the body into $W/as.out.
as() {
    local tok=$1 method=$2 path=$3
    shift 3
    ST=$(curl -s -o "$W/as.out" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $tok" \
        "$@" "$URL$path") || ST=000
}

# answered STATUS CODE: the last `as` got STATUS with error code CODE.
answered() { [ "$ST" = "$1" ] && [ "$(jq -r .error.code "$W/as.out" 2>/dev/null)" = "$2" ]; }

no_node_uploads() { [ -z "$(find "$ROOT/data" -name 'output.node-*' 2>/dev/null)" ]; }
slot_idle() { [ -z "$(jget /v1/workers ".workers[] | select(.host == \"$1\" and .state == \"busy\") | .task_id")" ]; }

scenario_fences() {
    local x host other mine theirs delivery
    echo "--- 6. the fences of the node endpoints, and DELETE of a task on a node"
    submit_held "$FIX/long.mp4" 2
    if ! wait_busy "nodeA nodeB" 60 "${IDS[@]}"; then
        fail "no node started one of the long clips"
        return
    fi
    x=$BUSY host=$BUSY_HOST other=nodeA mine=$NODE_B theirs=$NODE_A
    [ "$host" = nodeA ] && other=nodeB mine=$NODE_A theirs=$NODE_B
    delivery=$(jq -r .delivery "$ROOT/data/in_progress/$x/node.json")
    check "node.json of $x names $host" test "$(jq -r .node "$ROOT/data/in_progress/$x/node.json")" = "$host"
    as "$theirs" GET "/v1/node/tasks/$x/input"
    check "$other's token cannot fetch $x's input: 404 not_assigned" answered 404 not_assigned
    as "$mine" GET "/v1/node/tasks/$x/input"
    check "$host's token fetches it: 200, the uploaded bytes" \
        test "$ST:$(sha256sum <"$W/as.out" | cut -d' ' -f1)" = "200:$(sha256sum <"$FIX/long.mp4" | cut -d' ' -f1)"
    as "$mine" GET /v1/tasks
    check "a node token lists no tasks: 403 node_token" answered 403 node_token
    as "$ADMIN" GET /v1/node
    check "an admin token is not a node: 403 node_only" answered 403 node_only
    as "$mine" PUT "/v1/node/tasks/$x/output?delivery=$delivery" --data-binary @"$FIX/short.mp4" \
        -H "X-Taskmill-Sha256: $(printf 'x' | sha256sum | cut -d' ' -f1)"
    check "a result whose SHA-256 differs: 422 checksum_mismatch" answered 422 checksum_mismatch
    as "$mine" PUT "/v1/node/tasks/$x/output?delivery=$((delivery + 5))" --data-binary @"$FIX/short.mp4" \
        -H "X-Taskmill-Sha256: $(sha256sum <"$FIX/short.mp4" | cut -d' ' -f1)"
    check "a result for another delivery: 409 stale_delivery" answered 409 stale_delivery
    as "$theirs" PUT "/v1/node/tasks/$x/output?delivery=$delivery" --data-binary @"$FIX/short.mp4" \
        -H "X-Taskmill-Sha256: $(sha256sum <"$FIX/short.mp4" | cut -d' ' -f1)"
    check "a result from $other: 404 not_assigned" answered 404 not_assigned
    check "none of them left a file in the task's folder" no_node_uploads
    as "$ADMIN" DELETE "/v1/tasks/$x"
    check "DELETE of $x while it runs on $host: 204" test "$ST" = 204
    check "$host stops it" wait_for 10 grep -qF "$x: stopping: the server took the task back" "$TM_LOG/$host.log"
    check "  and its slot is idle within 10 s" wait_for 10 slot_idle "$host"
    api GET "/v1/tasks/$x" >/dev/null
    check "  and the task is gone: 404" test "$STATUS" = 404
    for id in "${IDS[@]}"; do [ "$id" = "$x" ] || check "the other clip is done" wait_done 120 "$id"; done
}

scenario_spread
scenario_fences
scenario_node_kill
scenario_nats_kill
scenario_partition
scenario_bad_token

# --- the end: nothing left behind, everything stops cleanly -------------------------------------
echo "--- the end"
check "NATS: the consumer has nothing pending or unacknowledged" wait_for 20 js_idle
if wait_for 15 nodes_clean; then
    ok "no node keeps work in its node/in_progress"
else
    fail "work left on the nodes: $(node_work_left nodeA) $(node_work_left nodeB)"
fi
api GET /v1/admin/check >"$W/out"
check "GET /v1/admin/check: 200, consistent" test "$STATUS:$(jq -r .consistent "$W/out")" = 200:true
check "nothing in failed/, pending/ or in_progress/" \
    test -z "$(find "$ROOT/data/failed" "$ROOT/data/pending" "$ROOT/data/in_progress" -mindepth 1 2>/dev/null)"
for n in nodeA nodeB; do
    node_stop "$n" && rc=0 || rc=$?
    check "$n stops on SIGTERM: exit 0 (exit $rc)" test "$rc" = 0
done
tm_stop cluster && rc=0 || rc=$?
check "taskmill-cluster stops on SIGTERM: exit 0 (exit $rc)" test "$rc" = 0
nats_stop && rc=0 || rc=$?
check "nats-server stops on SIGINT: exit 0 (exit $rc)" test "$rc" = 0
