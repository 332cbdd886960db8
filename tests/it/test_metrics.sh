#!/usr/bin/env bash
# test_metrics.sh - GET /metrics in the Prometheus text format, read with a real parser (Debian's
# python3-prometheus-client): only an admin token gets it; every family is there with its type;
# across a submitted clip the counters rise by what happened (one task submitted and finished
# done, the upload's and the download's bytes, the 201, one conversion and one wait observed)
# and the gauges follow the task.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3 # Debian's, with python3-prometheus-client
ADMIN=$(openssl rand -hex 32) USER_TOK=$(openssl rand -hex 32)
{
    echo "root admin $(printf %s "$ADMIN" | sha256sum | cut -d' ' -f1)"
    echo "alice user $(printf %s "$USER_TOK" | sha256sum | cut -d' ' -f1)"
} >"$T/tokens"
chmod 600 "$T/tokens"
write_conf "[rest]" "tokens_file = $T/tokens"
tm_start_all
CURL_OPTS=(-H "Authorization: Bearer $ADMIN")
TYPE=convert_video_to_libx265

# scrape NAME: GET /metrics as the admin into $W/NAME.txt, parsed into $W/NAME.json
# ({"series": {"name{labels}": value}, "types": {"family": "type"}}); fails unless 200, the
# text format's content type, and the parser takes it.
scrape() {
    local hdr=$W/$1.hdr
    api GET /metrics -D "$hdr" >"$W/$1.txt"
    [ "$STATUS" = 200 ] || { echo "GET /metrics: HTTP $STATUS" >&2; return 1; }
    grep -qi '^content-type: text/plain; version=0.0.4' "$hdr" || { echo "content type" >&2; return 1; }
    "$PY" - "$W/$1.txt" >"$W/$1.json" <<'PY'
import json, sys
from prometheus_client.parser import text_string_to_metric_families
series, types = {}, {}
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    types[fam.name] = fam.type
    for s in fam.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        series[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps({"series": series, "types": types}))
PY
}

# value NAME SERIES: one sample's value (0 when absent: a counter not yet seen).
value() { jq -r --arg k "$2" '.series[$k] // 0' "$W/$1.json"; }
# rose NAME_BEFORE NAME_AFTER SERIES BY: the sample rose by exactly BY.
rose() {
    local a b
    a=$(value "$1" "$3") b=$(value "$2" "$3")
    jq -en --argjson a "$a" --argjson b "$b" --argjson by "$4" '$b - $a == $by' >/dev/null ||
        { echo "$3: $a -> $b, not +$4" >&2; return 1; }
}
# rose_at_least NAME_BEFORE NAME_AFTER SERIES MIN
rose_at_least() {
    local a b
    a=$(value "$1" "$3") b=$(value "$2" "$3")
    jq -en --argjson a "$a" --argjson b "$b" --argjson min "$4" '$b - $a >= $min' >/dev/null ||
        { echo "$3: $a -> $b, not +$4 or more" >&2; return 1; }
}

# --- who may read it ------------------------------------------------------------------------------
st=$(curl -s -o /dev/null -w '%{http_code}' "$URL/metrics")
check "without a token: 401 ($st)" test "$st" = 401
st=$(curl -s -o "$W/user.out" -w '%{http_code}' -H "Authorization: Bearer $USER_TOK" "$URL/metrics")
check "with a user token: 403 admin_only ($st)" \
    test "$st:$(jq -r .error.code "$W/user.out" 2>/dev/null)" = 403:admin_only

# --- the families ---------------------------------------------------------------------------------
check "an admin scrapes it: 200, text format 0.0.4, parsed" scrape before
for f in taskmill_tasks_submitted:counter taskmill_http_requests:counter \
    taskmill_upload_bytes:counter taskmill_download_bytes:counter \
    taskmill_tasks_finished:counter taskmill_callback_deliveries:counter \
    taskmill_tasks:gauge taskmill_workers:gauge taskmill_draining:gauge \
    taskmill_http_request_duration_seconds:histogram taskmill_conversion_seconds:histogram \
    taskmill_queue_wait_seconds:histogram; do
    check "family ${f%%:*} is a ${f##*:}" \
        test "$(jq -r --arg n "${f%%:*}" '.types[$n] // "missing"' "$W/before.json")" = "${f##*:}"
done

# --- a clip, through the whole server ---------------------------------------------------------------
make_mp4 "$FIX/clip.mp4" 2
size=$(stat -c %s "$FIX/clip.mp4")
id=$(submit "$FIX/clip.mp4") || fail "submit"
check "the clip is done" wait_state "$id" done 60
api GET "/v1/tasks/$id/result" >"$W/result.bin"
check "its result downloads: 200" test "$STATUS" = 200
result_size=$(stat -c %s "$W/result.bin")
check "a second scrape" scrape after
check "tasks_submitted_total{type} +1" rose before after "taskmill_tasks_submitted_total{type=\"$TYPE\"}" 1
check "tasks_finished_total{outcome=done,type} +1" \
    rose before after "taskmill_tasks_finished_total{outcome=\"done\",type=\"$TYPE\"}" 1
check "http_requests_total{code=201} +1" rose before after 'taskmill_http_requests_total{code="201"}' 1
check "http_requests_total{code=200} rose (the polls, the download, the scrape)" \
    rose_at_least before after 'taskmill_http_requests_total{code="200"}' 3
check "upload_bytes_total rose by at least the clip ($size bytes)" \
    rose_at_least before after 'taskmill_upload_bytes_total{}' "$size"
check "download_bytes_total rose by the result ($result_size bytes)" \
    rose before after 'taskmill_download_bytes_total{}' "$result_size"
check "conversion_seconds_count +1" rose before after 'taskmill_conversion_seconds_count{}' 1
check "queue_wait_seconds_count +1" rose before after 'taskmill_queue_wait_seconds_count{}' 1
check "  and its +Inf bucket equals its count" test \
    "$(value after 'taskmill_queue_wait_seconds_bucket{le="+Inf"}')" = "$(value after 'taskmill_queue_wait_seconds_count{}')"
check "tasks{state=done} +1" rose before after 'taskmill_tasks{state="done"}' 1
check "workers{state=busy} is 0 again" test "$(value after 'taskmill_workers{state="busy"}')" = 0
check "request durations were observed" rose_at_least before after 'taskmill_http_request_duration_seconds_count{}' 3
api POST /v1/admin/drain >/dev/null
check "a third scrape, draining" scrape draining
check "draining is 1" test "$(value draining 'taskmill_draining{}')" = 1
