#!/usr/bin/env bash
# test_tls.sh - HTTPS with libmicrohttpd's GnuTLS support: a self-signed certificate made at test
# time; an upload, a status and a download over https, verified against that certificate; plain
# HTTP to the TLS port gets no answer; a bad key file stops rest at start.
. "$(dirname "$0")/lib.sh"

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
chmod 600 "$T/key.pem"
write_conf "[rest]" "tls_cert = $T/cert.pem" "tls_key = $T/key.pem"
tm_start_all
make_mp4 "$FIX/a.mp4" 1
# From here api, submit, wait_state and jget speak https and trust only this certificate.
PLAIN=$URL
URL=https://127.0.0.1:$PORT
CURL_OPTS=(--cacert "$T/cert.pem")

api POST /v1/tasks -F task_type=convert_video_to_libx265 -F "file_data=@$FIX/a.mp4" >"$W/out"
check "upload over https: 201 ($STATUS)" test "$STATUS" = 201
id=$(jq -r .id "$W/out")
check "status over https: done" wait_state "$id" done 60
api GET "/v1/tasks/$id/result" >"$W/r.mp4"
check "download over https: 200 ($STATUS)" test "$STATUS" = 200
check "download over https matches the sha256" \
    test "$(sha256sum "$W/r.mp4" | cut -d' ' -f1)" = "$(jget "/v1/tasks/$id" .result.sha256)"

# The port is open and speaks TLS (an https request right before and right after), so what
# plain HTTP gets is the TLS port's doing, not a closed port's.
api GET /healthz >/dev/null
check "https healthz before the plain request: 200 ($STATUS)" test "$STATUS" = 200
rc=0
st=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$PLAIN/healthz") || rc=$?
# 52: empty reply, 56: connection reset; 7 (refused) or 28 (timeout) would not be the TLS port.
check "plain http on the TLS port gets no HTTP answer (curl exit $rc, status $st)" \
    bash -c "[ '$st' = 000 ] && { [ $rc = 52 ] || [ $rc = 56 ]; }"
api GET /healthz >/dev/null
check "https healthz after the plain request: 200 ($STATUS)" test "$STATUS" = 200
rc=0
curl -s -m 5 -o /dev/null "$URL/healthz" || rc=$?
check "an untrusted client refuses the self-signed certificate (curl exit $rc, want 60)" test "$rc" = 60

# A bad key: rest exits by itself at start with an error saying so. It gets a port of its own and
# a root of its own; timeout ends a rest that wrongly started (status 124, a failure too).
echo "not a key" >"$W/bad.pem"
BADPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tm_write_conf "$W/bad.conf" "$W/badroot" "$BADPORT" "[rest]" "tls_cert = $T/cert.pem" "tls_key = $W/bad.pem"
rc=0
timeout 5 "$TM_BIN/taskmill-rest" --config "$W/bad.conf" 2>"$W/err" || rc=$?
check "a bad key stops rest at start (exit $rc)" bash -c "[ $rc -ne 0 ] && [ $rc -ne 124 ]"
check "and says it is the certificate/key ($(tr '\n' ' ' <"$W/err"))" \
    grep -q "x509 certificate/key" "$W/err"
