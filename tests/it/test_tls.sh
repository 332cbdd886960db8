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
S=https://127.0.0.1:$PORT

out=$(curl -s -S --cacert "$T/cert.pem" -w '\n%{http_code}' -F task_type=convert_video_to_libx265 \
    -F "file_data=@$FIX/a.mp4" "$S/v1/tasks")
check "upload over https: 201" test "$(tail -n 1 <<<"$out")" = 201
id=$(sed '$d' <<<"$out" | jq -r .id)
for _ in $(seq 300); do
    [ "$(curl -s --cacert "$T/cert.pem" "$S/v1/tasks/$id" | jq -r .state)" = done ] && break
    sleep 0.2
done
check "status over https: done" test "$(curl -s --cacert "$T/cert.pem" "$S/v1/tasks/$id" | jq -r .state)" = done
curl -s --cacert "$T/cert.pem" -o "$W/r.mp4" "$S/v1/tasks/$id/result"
check "download over https matches the sha256" \
    test "$(sha256sum "$W/r.mp4" | cut -d' ' -f1)" = "$(curl -s --cacert "$T/cert.pem" "$S/v1/tasks/$id" | jq -r .result.sha256)"
check "plain http on the TLS port gets no HTTP answer" \
    test "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz" || true)" != 200
check "an untrusted client refuses the self-signed certificate" \
    bash -c "! curl -s -o /dev/null '$S/healthz'"
echo "not a key" >"$W/bad.pem"
tm_write_conf "$W/bad.conf" "$ROOT" 1 "[rest]" "tls_cert = $T/cert.pem" "tls_key = $W/bad.pem"
check "a bad key stops rest at start" bash -c "! '$TM_BIN/taskmill-rest' --config '$W/bad.conf' 2>/dev/null"
