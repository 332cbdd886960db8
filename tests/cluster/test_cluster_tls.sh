#!/usr/bin/env bash
# test_cluster_tls.sh - the cluster's other guarantees, on the hosts of tests/cluster/lib.sh:
#   1. NATS with mutual TLS (a CA of the test's own, a client certificate for the bridge and for
#      each node) and a user: a node with its certificate converts a clip; a node without one
#      never gets in and takes nothing;
#   2. a task whose node dies on every delivery fails with worker_crashed once max_deliver
#      deliveries went silent, the taken-over delivery counted as an interruption;
#   3. a task published while no node takes it goes back to the queue after start_timeout, and
#      the local pool converts it.
# The local pool is stopped for 1-3 so that only nodes can take work. Needs root (skipped
# otherwise).
. "$(dirname "$0")/lib.sh"

ACK_WAIT=3 MAX_DELIVER=2 START_TIMEOUT=4

# --- a CA, a certificate for nats-server (10.250.0.1), one for its clients ----------------------
TLS=$T/tls
mkdir -p "$TLS"
tls_make() {
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=taskmill-test-ca \
        -keyout "$TLS/ca.key" -out "$TLS/ca.pem" 2>/dev/null
    for who in server client; do
        openssl req -newkey rsa:2048 -nodes -subj "/CN=$who" -keyout "$TLS/$who.key" \
            -out "$TLS/$who.csr" 2>/dev/null
    done
    printf 'subjectAltName=IP:%s\n' "$SRV_IP" >"$TLS/san.ext"
    openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" \
        -CAcreateserial -days 2 -extfile "$TLS/san.ext" -out "$TLS/server.pem" 2>/dev/null
    openssl x509 -req -in "$TLS/client.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" \
        -CAcreateserial -days 2 -out "$TLS/client.pem" 2>/dev/null
    chmod 644 "$TLS"/*
}
tls_make

# nats-server with TLS that asks every client for a certificate of our CA (verify: true).
NATS_URL=tls://$SRV_IP:$NPORT
mkdir -p "$T/nats"
cat >"$T/nats.conf" <<EOF
server_name: taskmill_test_tls
listen: "$SRV_IP:$NPORT"
http: "127.0.0.1:$MPORT"
jetstream { store_dir: "$T/nats" }
tls {
  cert_file: "$TLS/server.pem"
  key_file: "$TLS/server.key"
  ca_file: "$TLS/ca.pem"
  verify: true
  timeout: 3
}
authorization { users = [ {user: "$NATS_USER", password: "$NATS_PASS"} ] }
EOF

make_mp4 "$FIX/short.mp4" 2
make_mp4 "$FIX/long.mp4" 30 640x360

net_up nodeA nodeC
nats_start
ADMIN=$(tok) NODE_A=$(tok) NODE_C=$(tok)
{
    echo "root admin $(tok_hash "$ADMIN")"
    echo "nodeA node $(tok_hash "$NODE_A")"
    echo "nodeC node $(tok_hash "$NODE_C")"
} >"$T/tokens"
chmod 600 "$T/tokens"
srv_wrappers
write_conf "workers = 1" "[rest]" "listen = $SRV_IP:$PORT" "tokens_file = $T/tokens" \
    "[cluster]" "nats_url = $NATS_URL" "nats_user = $NATS_USER" "nats_password = $NATS_PASS" \
    "nats_ca = $TLS/ca.pem" "nats_cert = $TLS/client.pem" "nats_key = $TLS/client.key" \
    "ack_wait = $ACK_WAIT" "max_deliver = $MAX_DELIVER" "start_timeout = $START_TIMEOUT"
tm_start_all
tm_start cluster
CURL_OPTS=(-H "Authorization: Bearer $ADMIN")
tm_stop convert # only nodes take work until scenario 3 starts it again

field() { api GET "/v1/tasks/$1" >"$W/task.json" && jq -r "$2" "$W/task.json"; }
took() { grep -qF "$1: took delivery=$2" "$TM_LOG/nodeA.log"; }
node_in_stream() { grep -q "taking tasks from TASKMILL" "$TM_LOG/$1.log"; }
not() { ! "$@"; }
is_state() { [ "$(field "$1" .state)" = "$2" ]; }
reports_since() { [ "$(count_in "$TM_LOG/cluster.log" "node $1 (token")" -gt "$2" ]; }

# --- 1. mutual TLS --------------------------------------------------------------------------------
echo "--- 1. NATS with mutual TLS"
node_conf nodeA "$NODE_A" "[node]" "nats_ca = $TLS/ca.pem" "nats_cert = $TLS/client.pem" \
    "nats_key = $TLS/client.key"
node_conf nodeC "$NODE_C" "[node]" "nats_ca = $TLS/ca.pem" # no client certificate
check "nodeA (with a client certificate) starts" node_start nodeA
check "  and binds to the stream over TLS" wait_for 15 node_in_stream nodeA
node_spawn nodeC # without one: NATS refuses it (libnats keeps trying, or gives up: both are fine)
id=$(submit "$FIX/short.mp4") || fail "submit"
check "a clip is done" wait_state "$id" done 60
check "  on nodeA ($(field "$id" '.history[0].host'))" test "$(field "$id" '.history[0].host')" = nodeA
check "nodeC never got into NATS" not node_in_stream nodeC
check "  and the bridge never heard of it" test "$(count_in "$TM_LOG/cluster.log" 'node nodeC')" = 0
if alive "${NODE_PID[nodeC]}"; then
    node_stop nodeC && rc=0 || rc=$?
    check "nodeC, still trying, stops on SIGTERM: exit 0 ($rc)" test "$rc" = 0
else
    node_exit nodeC 5
    check "nodeC, refused for good, exited non-zero ($REAP_RC)" test "$REAP_RC" != 0
    check "  naming NATS in its log" grep -q "NATS\|taskmill.cancel" "$TM_LOG/nodeC.log"
fi

# --- 2. a node that dies on every delivery -------------------------------------------------------
echo "--- 2. max_deliver silent deliveries"
id=$(submit "$FIX/long.mp4") || fail "submit"
check "nodeA takes the long clip (delivery 1)" wait_for 30 took "$id" 1
node_kill nodeA
ok "nodeA killed (kill -9) during delivery 1"
check "nodeA starts again" node_start nodeA
check "  and takes the clip again after ack_wait (delivery 2)" wait_for 30 took "$id" 2
node_kill nodeA
ok "nodeA killed (kill -9) during delivery 2"
check "the task fails once the last delivery went silent" wait_state "$id" failed 40
check "  with worker_crashed ($(field "$id" .error.code))" test "$(field "$id" .error.code)" = worker_crashed
check "  naming its $MAX_DELIVER deliveries" grep -q "each of its $MAX_DELIVER deliveries" <<<"$(field "$id" .error.message)"
check "  the taken-over delivery counted as an interruption ($(field "$id" .interruptions))" \
    test "$(field "$id" .interruptions)" = 1
check "  and the bridge gave it up once" \
    test "$(count_in "$TM_LOG/cluster.log" "$id: the node running it went silent")" = 1

# --- 3. a task no node takes ------------------------------------------------------------------
echo "--- 3. a task no node takes goes back to the queue"
seen=$(count_in "$TM_LOG/cluster.log" "node nodeA (token")
check "nodeA starts again" node_start nodeA
check "  and reports itself to the bridge" wait_for 10 reports_since nodeA "$seen"
kill -STOP "${NODE_PID[nodeA]}"
ok "nodeA frozen (SIGSTOP) while the bridge still counts its slot free"
id=$(submit "$FIX/short.mp4") || fail "submit"
check "the bridge publishes it" wait_for 10 grep -qF "$id: published" "$TM_LOG/cluster.log"
check "  and after start_timeout hands it back to the queue" \
    wait_for $((START_TIMEOUT + 10)) grep -qF "$id: no node took it; back to the queue" "$TM_LOG/cluster.log"
check "it is pending again (the bridge forgets nodeA within 5 s)" wait_for 15 is_state "$id" pending
tm_start convert
check "the local pool converts it" wait_state "$id" done 60
check "  on the server ($(field "$id" '.history[0].host'))" test "$(field "$id" '.history[0].host')" = "$LOCAL_HOST"
kill -CONT "${NODE_PID[nodeA]}"
node_stop nodeA && rc=0 || rc=$?
check "nodeA stops on SIGTERM: exit 0 ($rc)" test "$rc" = 0
tm_stop cluster && rc=0 || rc=$?
check "taskmill-cluster stops on SIGTERM: exit 0 ($rc)" test "$rc" = 0
nats_stop && rc=0 || rc=$?
check "nats-server stops on SIGINT: exit 0 ($rc)" test "$rc" = 0
