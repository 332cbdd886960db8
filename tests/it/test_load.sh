#!/usr/bin/env bash
# test_load.sh - what may start, and when: the load gate holds a task while an artificial CPU
# load runs (busy loops raising the real /proc/pressure/cpu) and lets it start once the load is
# gone, saying why in /v1/workers and /v1/status; the cooldown spaces starts; a type's
# max_parallel; the cores shared among conversions when tasks wait. ctest runs it alone
# (RUN_SERIAL): another test's load would blur the pressure.
. "$(dirname "$0")/lib.sh"

if [ ! -r /proc/pressure/cpu ]; then
    fail "this kernel has no /proc/pressure/cpu (PSI): the load gate's pressure source cannot be tried"
    exit 1
fi

types=("[type.nap]" "kind = exec" "command = /bin/sleep {seconds}" "input = none"
    "param.seconds = int:0..30 default 0"
    "[type.solo]" "kind = exec" "command = /bin/sleep {seconds}" "input = none"
    "param.seconds = int:0..30 default 1" "max_parallel = 1")
write_conf "[convert]" "workers = 2" "load_source = pressure" "load_medium = 25" \
    "load_high = 45" "parallel_low = 2" "parallel_medium = 1" "parallel_high = 0" "${types[@]}"
tm_start_all

pressure() { sed -n 's/^some avg10=\([0-9.]*\).*/\1/p' /proc/pressure/cpu; }
below() { awk -v p="$(pressure)" -v t="$1" 'BEGIN { exit !(p < t) }'; }
above() { awk -v p="$(pressure)" -v t="$1" 'BEGIN { exit !(p >= t) }'; }
held_high() { api GET /v1/workers | jq -e '[.workers[] | select(.state == "held") |
    .held_because | test("load high")] | length == 2' >/dev/null; }

wait_for 60 below 25 || true
check "the machine is quiet first (cpu pressure $(pressure)% < 25)" below 25

# --- an artificial load: six busy loops per core ---
LOOPS=()
for _ in $(seq $((6 * $(nproc)))); do
    sh -c 'while :; do :; done' &
    LOOPS+=($!)
done
stop_loops() { kill "${LOOPS[@]}" 2>/dev/null || true; wait "${LOOPS[@]}" 2>/dev/null || true; LOOPS=(); }
test_cleanup() { stop_loops; }
wait_for 60 above 45 || true
check "the loops raise the cpu pressure past load_high ($(pressure)% >= 45)" above 45
check "both converter slots are held, saying why" wait_for 10 held_high
api GET /v1/workers >"$W/workers"
check "  GET /v1/workers: state held, held_because names the level and the measure" \
    jq -e '[.workers[] | select(.state == "held")][0].held_because | test("load high \\([0-9.]+% cpu pressure\\): 0 at a time")' "$W/workers"
api GET /v1/status >"$W/status"
check "  GET /v1/status: held_slots 2 and the reason" \
    jq -e '.held_slots == 2 and (.held_because | test("load high"))' "$W/status"
json_post '{"task_type":"nap"}' >"$W/out"
id=$(jq -r .id "$W/out")
held=true
for _ in $(seq 15); do # 3 s: a slot that would start it has had its chance many times over
    [ "$(api GET "/v1/tasks/$id" | jq -r .state)" = pending ] || held=false
    sleep 0.2
done
check "a task submitted under the load stays pending while the load lasts" $held
stop_loops
stopped_at=$(date +%s.%N)
check "once the loops stop the task runs" wait_state "$id" done 120
started=$(epoch "$(api GET "/v1/tasks/$id" | jq -r .started_at)")
check "  after the load ended" awk -v a="$started" -v b="$stopped_at" 'BEGIN { exit !(a > b) }'
check "  no slot is held any more" wait_for 30 bash -c "curl -s '$URL/v1/status' | jq -e '.held_slots == 0' >/dev/null"

# --- max_parallel = 1: two tasks of one type do not overlap, though two slots are free. The
# converter is restarted without load settings: right after the load the gate alone would
# still allow one task at a time, and this check would pass without max_parallel.
tm_stop convert
write_conf "[convert]" "workers = 2" "${types[@]}"
tm_start convert
for _ in 1 2; do json_post '{"task_type":"solo","params":{"seconds":1}}' | jq -r .id; done >"$W/solo"
mapfile -t solo <"$W/solo"
for i in "${solo[@]}"; do wait_state "$i" done 30 || true; done
a_end=$(epoch "$(api GET "/v1/tasks/${solo[0]}" | jq -r .finished_at)")
b_start=$(epoch "$(api GET "/v1/tasks/${solo[1]}" | jq -r .started_at)")
check "max_parallel 1: the second started after the first finished" \
    awk -v a="$a_end" -v b="$b_start" 'BEGIN { exit !(b >= a) }'

# --- cooldown = 2: starts at least 2 s apart, though both slots are free ---
tm_stop convert
write_conf "[convert]" "workers = 2" "cooldown = 2" "${types[@]}"
tm_start convert
for _ in 1 2 3; do json_post '{"task_type":"nap"}' | jq -r .id; done >"$W/cool"
mapfile -t cool <"$W/cool"
for i in "${cool[@]}"; do wait_state "$i" done 30 || true; done
starts=$(for i in "${cool[@]}"; do epoch "$(api GET "/v1/tasks/$i" | jq -r .started_at)"; done | sort -n | tr '\n' ' ')
check "cooldown 2: three starts at least 2 s apart ($starts)" awk -v s="$starts" \
    'BEGIN { n = split(s, t, " "); for (i = 2; i <= n; i++) if (t[i] - t[i-1] < 1.95) exit 1 }'

# --- the cores shared: a video alone lets x265 use every core (threads=0); when tasks wait,
# each of the two conversions gets cores / 2 pool threads (at least 1) ---
tm_stop convert
write_conf "[convert]" "workers = 2" "${types[@]}"
tm_start convert
make_mp4 "$FIX/share.mp4" 2 320x240
api POST /v1/admin/drain >/dev/null
for _ in 1 2 3; do submit "$FIX/share.mp4"; done >"$W/share"
mapfile -t share <"$W/share"
api POST /v1/admin/resume >/dev/null
for i in "${share[@]}"; do wait_state "$i" done 60 || true; done
cores=$(nproc)
half=$((cores / 2 > 1 ? cores / 2 : 1))
first_two=$(grep -E "started kind=video" "$TM_LOG/convert.log" | grep -E "$(IFS='|'; echo "${share[*]}")" |
    head -n 2 | sed 's/.*threads=//' | tr '\n' ' ')
check "three waiting videos: the first two ran with $half thread(s) each ($first_two)" test "$first_two" = "$half $half "
alone=$(submit "$FIX/share.mp4")
wait_state "$alone" done 60 || true
check "a video alone: threads=0 (x265 takes every core)" \
    grep -q "$alone: started kind=video .* threads=0" "$TM_LOG/convert.log"
