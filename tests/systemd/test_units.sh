#!/usr/bin/env bash
# test_units.sh - the real units under a real systemd: start taskmill.target, convert a clip,
# stop the converter in the middle of an encode (partial gone, task pending, not failed),
# start it again (the task completes), follow one task in the journal by TASK_ID=, run the
# client PC's taskmill-client.service until a video's result is beside it and start its timer,
# and stop the target (every daemon exits cleanly). Also systemd-analyze verify on every unit.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "needs root for namespaces"; exit 77; }

sd_boot
# Verified inside, where the units' paths exist.
for u in taskmill-{init,queue,convert,callback,rest,client}.service taskmill-client.timer \
    taskmill.target; do
    out=$(sd systemd-analyze verify "/run/systemd/system/$u" 2>&1 | grep -v -e 'tm-boot' || true)
    check "systemd-analyze verify $u is clean" test -z "$out"
    [ -z "$out" ] || echo "$out" >&2
done
for u in systemd-sysctl.service systemd-remount-fs.service systemd-tmpfiles-setup-dev.service; do
    state=$(sd_ctl is-enabled "$u" 2>/dev/null || true)
    check "$u is masked ($state), so the boot touches nothing of the host" \
        test "${state%-runtime}" = masked
done
sd_ctl start taskmill.target
for d in init queue convert callback rest; do
    check "taskmill-$d is active" sd_ctl is-active --quiet "taskmill-$d.service"
done
check "healthz is 200 under systemd" test "$(sd_curl -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/healthz)" = 200

ffmpeg -v error -y -f lavfi -i testsrc2=size=1280x720:rate=25 -f lavfi -i sine -t 10 \
    -c:v libx264 -preset ultrafast -c:a aac -shortest "$T/clip.mp4"
id=$(sd_curl -F task_type=convert_video_to_libx265 -F 'params={"preset":"medium"}' \
    -F "file_data=@$T_IN/clip.mp4" http://127.0.0.1:8080/v1/tasks | jq -r .id)
check "task accepted" test -n "$id"
state() { sd_curl "http://127.0.0.1:8080/v1/tasks/$id" | jq -r .state; }
DATA=/var/lib/taskmill/data
for _ in $(seq 150); do
    sd test -e "$DATA/in_progress/$id/output.mp4.partial" && break
    sleep 0.1
done
check "a partial output exists mid-encode" sd test -e "$DATA/in_progress/$id/output.mp4.partial"
sd_ctl stop taskmill-convert.service
check "after stopping convert the task is pending" test "$(state)" = pending
check "the partial output is gone" test -z "$(sd find "$DATA/pending/$id" -name '*.partial')"
check "convert exited cleanly" test "$(sd_ctl show -P Result taskmill-convert.service)" = success
check "the interruption is not an attempt" test "$(sd_curl "http://127.0.0.1:8080/v1/tasks/$id" | jq -r .attempts)" = 0

sd_ctl start taskmill-convert.service
for _ in $(seq 600); do
    s=$(state)
    [ "$s" = done ] || [ "$s" = failed ] && break
    sleep 0.2
done
check "after restarting convert the task is done" test "$(state)" = done
sd_curl -o "$T_IN/out.mp4" "http://127.0.0.1:8080/v1/tasks/$id/result"
check "the result is hevc" test "$(ffprobe -v error -select_streams v -show_entries stream=codec_name -of csv=p=0 "$T/out.mp4")" = hevc

sd journalctl --sync # the daemons' datagrams are all written before we read
story=$(sd journalctl --no-pager -o cat TASK_ID="$id")
idents=$(sd journalctl --no-pager -o json TASK_ID="$id" | jq -r .SYSLOG_IDENTIFIER | sort -u | tr '\n' ' ')
check "journalctl TASK_ID= shows rest, queue and convert ($idents)" \
    bash -c "grep -q taskmill-rest <<<'$idents' && grep -q taskmill-queue <<<'$idents' && grep -q taskmill-convert <<<'$idents'"
check "the task's journal tells it was interrupted" grep -q interrupted <<<"$story"

# The client PC's units: each start of taskmill-client.service is one `taskmill sync` run; the
# first sends the video, a later one fetches the result beside it and deletes the task.
ffmpeg -v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -t 2 -c:v libx264 -preset ultrafast \
    "$T/holiday.mp4"
sd mkdir -p /var/lib/videos
sd cp "$T_IN/holiday.mp4" /var/lib/videos/
for _ in $(seq 30); do
    sd_ctl start taskmill-client.service
    sd test -e /var/lib/videos/holiday.hevc.mp4 && break
    sleep 1
done
check "taskmill-client.service put the result beside the video" sd test -e /var/lib/videos/holiday.hevc.mp4
check "the client's runs ended with Result=success" \
    test "$(sd_ctl show -P Result taskmill-client.service)" = success
check "the result is hevc" test "$(sd ffprobe -v error -select_streams v -show_entries stream=codec_name \
    -of csv=p=0 /var/lib/videos/holiday.hevc.mp4)" = hevc
check "the source is kept" sd test -e /var/lib/videos/holiday.mp4
check "the client deleted its task on the server (only the earlier task is left)" \
    test "$(sd_curl http://127.0.0.1:8080/v1/tasks | jq -r '[.tasks[].id] | join(",")')" = "$id"
check "the client kept its state in its StateDirectory" sd test -s /var/lib/taskmill-client/state.json
sd journalctl --sync
client_log=$(sd journalctl --no-pager -o cat -u taskmill-client.service)
check "the client's journal tells what it did" grep -q "holiday.hevc.mp4" <<<"$client_log"
sd_ctl start taskmill-client.timer
check "taskmill-client.timer is active" sd_ctl is-active --quiet taskmill-client.timer
check "and has a next run" test -n "$(sd_ctl show -P NextElapseUSecRealtime taskmill-client.timer)"

sd_ctl stop taskmill.target
for d in rest callback convert queue init; do
    check "taskmill-$d stopped with Result=success" test "$(sd_ctl show -P Result "taskmill-$d.service")" = success
    check "taskmill-$d is inactive" test "$(sd_ctl is-active "taskmill-$d.service" || true)" = inactive
done
# systemd stopped init last: it logged its shutdown cleanup after convert's last line.
sd journalctl --sync
last=$(sd journalctl --no-pager -o cat SYSLOG_IDENTIFIER=taskmill-init | tail -n 3)
check "init ran its shutdown cleanup" grep -q "shutdown cleanup" <<<"$last"
