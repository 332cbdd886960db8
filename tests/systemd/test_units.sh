#!/usr/bin/env bash
# test_units.sh - the real units under a real systemd: start taskmill.target, convert a clip,
# stop the converter in the middle of an encode (partial gone, task pending, not failed),
# start it again (the task completes), follow one task in the journal by TASK_ID=, run the
# client PC's taskmill-client.service until a video's result is beside it and start its timer,
# have a conversion node (taskmill-cluster, taskmill-node, nats-server) convert a clip, and stop
# the target (every daemon exits cleanly). Also systemd-analyze verify on every unit,
# the sandbox of docs/systemd.md as systemd reports it (systemctl show, value by value), and what
# the running daemons really got (/proc/PID/status, their namespaces and mounts).
# Before lib.sh, whose EXIT trap would turn the skip into a failure.
if [ "$(id -u)" -ne 0 ]; then
    echo "skipped: needs root for namespaces"
    exit 77
fi
. "$(dirname "$0")/lib.sh"

sd_boot
# Verified inside, where the units' paths exist.
for u in taskmill-{init,queue,convert,callback,rest,client,cluster,node}.service taskmill-client.timer \
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

# --- the sandbox as systemd applies it: docs/systemd.md, value by value ---------------------------
# Read while the services run: WatchdogUSec, for one, reports infinity until a service starts.
SD_UNITS=(init queue convert callback rest)
NET_UNITS=(callback rest) # the network services; the others have no network
LOCAL_UNITS=(init queue convert)
for d in "${SD_UNITS[@]}"; do sd_ctl show --all "taskmill-$d.service" >"$T/show.$d"; done
prop() { sed -n "s/^$2=//p" "$T/show.$1" | head -n 1; } # prop UNIT PROPERTY
words() { tr ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' ' | sed 's/ $//'; }

# expect PROPERTY VALUE [UNIT...]: each unit (all five when none is named) reports PROPERTY=VALUE;
# expect_set compares the space-separated words in any order; expect_re matches a regex.
expect_cmp() {
    local how=$1 p=$2 want=$3 d got bad=""
    shift 3
    local units=("$@")
    [ ${#units[@]} -gt 0 ] || units=("${SD_UNITS[@]}")
    for d in "${units[@]}"; do
        got=$(prop "$d" "$p")
        case $how in
        eq) [ "$got" = "$want" ] ;;
        set) [ "$(words <<<"$got")" = "$(words <<<"$want")" ] ;;
        re) [[ $got =~ ^($want)$ ]] ;;
        esac || bad+=" $d='$got'"
    done
    check "$p=$want on ${units[*]}${bad:+ (but$bad)}" test -z "$bad"
}
expect() { expect_cmp eq "$@"; }
expect_set() { expect_cmp set "$@"; }
expect_re() { expect_cmp re "$@"; }

expect Type notify
expect NotifyAccess main
expect Restart on-failure
expect WatchdogUSec 30s
expect DynamicUser yes
expect User taskmill
expect StateDirectory taskmill
expect RuntimeDirectory taskmill init
expect ReadWritePaths -/run/taskmill queue convert callback rest
expect UMask 0027
expect ProtectSystem strict
expect ProtectHome yes
expect PrivateTmp yes
expect NoNewPrivileges yes
expect CapabilityBoundingSet ""
expect AmbientCapabilities ""
expect PrivateDevices yes
expect DevicePolicy closed
expect PrivateMounts yes
for p in ProtectKernelTunables ProtectKernelModules ProtectKernelLogs ProtectControlGroups \
    ProtectClock ProtectHostname RestrictNamespaces RestrictRealtime RestrictSUIDSGID \
    LockPersonality MemoryDenyWriteExecute; do
    expect "$p" yes
done
expect ProtectProc invisible
expect ProcSubset pid init queue callback rest
# convert reads /proc/loadavg and /proc/pressure/cpu for its load gate
expect ProcSubset all convert
expect SystemCallArchitectures native
expect_re SystemCallErrorNumber '1|EPERM'
expect_set RestrictAddressFamilies AF_UNIX "${LOCAL_UNITS[@]}"
expect_set RestrictAddressFamilies "AF_UNIX AF_INET AF_INET6" "${NET_UNITS[@]}"
expect PrivateNetwork yes "${LOCAL_UNITS[@]}"
expect PrivateNetwork no "${NET_UNITS[@]}"
expect_set IPAddressDeny "0.0.0.0/0 ::/0" "${LOCAL_UNITS[@]}"
expect IPAddressDeny "" "${NET_UNITS[@]}"
# SystemCallFilter=@system-service ~@privileged: systemctl lists the allowed calls. None may be
# outside @system-service or inside @privileged (groups expanded as this systemd defines them);
# and what the daemons need, setrlimit and sched_setaffinity for the converter among it, is in.
sd systemd-analyze syscall-filter >"$T/syscall-groups" 2>/dev/null
for d in "${SD_UNITS[@]}"; do
    out=$(python3 - "$T/syscall-groups" "$(prop "$d" SystemCallFilter)" <<'PY'
import sys
groups, cur = {}, None
for line in open(sys.argv[1]):
    s = line.strip()
    if not s or s.startswith('#'):
        continue
    if not line[0].isspace() and s.startswith('@'):
        cur = groups.setdefault(s, [])
    elif cur is not None:
        cur.append(s)

def expand(g):
    out = set()
    for m in groups.get(g, []):
        out |= expand(m) if m.startswith('@') else {m}
    return out

value = sys.argv[2].split()
service, privileged = expand('@system-service'), expand('@privileged')
need = {'read', 'write', 'openat', 'close', 'fsync', 'renameat2', 'unlinkat', 'mkdirat', 'socket',
        'connect', 'sendto', 'recvfrom', 'epoll_wait', 'timerfd_settime', 'clone', 'execve',
        'setrlimit', 'prlimit64', 'sched_setaffinity'}
problems = []
if not service or not privileged:
    problems.append('systemd-analyze syscall-filter gave no @system-service or @privileged')
if not value:
    problems.append('no filter')
elif value[0].startswith('~'):
    problems.append('a deny list (%s...), not an allow list' % ' '.join(value[:3]))
else:
    allowed = set(value)
    if allowed & privileged:
        problems.append('allows @privileged calls: ' + ' '.join(sorted(allowed & privileged)[:10]))
    if allowed - service:
        problems.append('allows calls outside @system-service: ' + ' '.join(sorted(allowed - service)[:10]))
    if need - allowed:
        problems.append('does not allow ' + ' '.join(sorted(need - allowed)))
    print('%d calls allowed' % len(allowed))
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
PY
    ) && rc=0 || rc=$?
    check "taskmill-$d: SystemCallFilter is @system-service without @privileged ($(tr '\n' ';' <<<"$out" | sed 's/;$//'))" test $rc = 0
done

# --- the sandbox from inside: what the running daemons got ----------------------------------------
PID1_NET=$(sd readlink /proc/1/ns/net)
declare -A MAINPID
for d in "${SD_UNITS[@]}"; do
    MAINPID[$d]=$(sd_ctl show -P MainPID "taskmill-$d.service")
    sd cat "/proc/${MAINPID[$d]}/status" >"$T/status.$d"
done
status() { sed -n "s/^$2:[[:space:]]*//p" "$T/status.$1" | tr -s '\t ' ' '; } # status UNIT FIELD
UID_DYN=$(prop convert UID)
check "the dynamic user has a uid ($UID_DYN), not root" test -n "$UID_DYN" -a "$UID_DYN" != 0 -a "$UID_DYN" != "[not set]"
bad=""
for d in "${SD_UNITS[@]}"; do
    [ "$(status "$d" Uid)" = "$UID_DYN $UID_DYN $UID_DYN $UID_DYN" ] || bad+=" $d='$(status "$d" Uid)'"
done
check "every daemon's real, effective, saved and fs uid is that one uid${bad:+ (but$bad)}" test -z "$bad"
for field in NoNewPrivs:1 CapInh:0000000000000000 CapPrm:0000000000000000 \
    CapEff:0000000000000000 CapBnd:0000000000000000 CapAmb:0000000000000000 Seccomp:2; do
    bad=""
    for d in "${SD_UNITS[@]}"; do
        [ "$(status "$d" "${field%%:*}")" = "${field#*:}" ] || bad+=" $d='$(status "$d" "${field%%:*}")'"
    done
    check "/proc/PID/status of every daemon: ${field%%:*} ${field#*:}${bad:+ (but$bad)}" test -z "$bad"
done
for d in "${SD_UNITS[@]}"; do
    ns=$(sd readlink "/proc/${MAINPID[$d]}/ns/net")
    if [[ " ${LOCAL_UNITS[*]} " == *" $d "* ]]; then
        check "taskmill-$d has a network namespace of its own ($ns, not $PID1_NET)" test "$ns" != "$PID1_NET"
    else
        check "taskmill-$d is on the network ($ns is $PID1_NET)" test "$ns" = "$PID1_NET"
    fi
done
# The converter's mounts: the mount holding each path, as in its /proc/PID/mountinfo.
sd cat "/proc/${MAINPID[convert]}/mountinfo" >"$T/mountinfo.convert"
sd cat /proc/1/mountinfo >"$T/mountinfo.pid1"
# mounts_of MOUNTINFO PATH...: "PATH OPTIONS ROOT" for each PATH, of the mount that holds it (the
# longest mount point above it, the last one mounted there).
mounts_of() {
    python3 - "$@" <<'PY'
import sys
table = [line.split() for line in open(sys.argv[1])]
for path in sys.argv[2:]:
    best = None
    for f in table:
        point = f[4].replace('\\040', ' ')
        if (path == point or path.startswith(point.rstrip('/') + '/')) and \
                (best is None or len(point) >= len(best[0])):
            best = (point, f[5], f[3])
    print('%s %s %s' % ((path,) + (best[1:] if best else ('none', 'none'))))
PY
}
declare -A MNT
while read -r path opts root; do MNT[pid1:$path]="$opts $root"; done < <(mounts_of "$T/mountinfo.pid1" /)
while read -r path opts root; do MNT[$path]="$opts $root"; done < <(mounts_of "$T/mountinfo.convert" \
    / /usr /etc /var /var/lib/private/taskmill /run/taskmill /tmp)
opts_have() { [[ ,${MNT[$1]%% *}, == *",$2,"* ]]; } # PATH OPTION
check "systemd's own / is writable (so what follows is the unit's doing): ${MNT[pid1:/]}" opts_have pid1:/ rw
for p in / /usr /etc /var; do
    check "convert: $p is read-only (ProtectSystem=strict): ${MNT[$p]}" opts_have "$p" ro
done
for p in /var/lib/private/taskmill /run/taskmill; do
    check "convert: $p is writable: ${MNT[$p]}" opts_have "$p" rw
done
check "convert: /tmp is its own (PrivateTmp): ${MNT[/tmp]}" \
    grep -q "systemd-private-.*-taskmill-convert.service-" <<<"${MNT[/tmp]#* }"
check "convert: /home and /root are inaccessible (ProtectHome), mode 0" \
    test "$(sd nsenter -t "${MAINPID[convert]}" -m stat -c %a /home /root | tr '\n' ' ')" = "0 0 "
host_blk=$(sd find /dev -type b | wc -l)
check "convert: no block device in its /dev (PrivateDevices; systemd's /dev has $host_blk)" \
    test -z "$(sd nsenter -t "${MAINPID[convert]}" -m find /dev -type b)"

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
# Its events carry TASK_TYPE= and TASK_STATE= as well: the states it went through, in order of
# time, and each event of the right type.
states=$(sd journalctl --no-pager -o json TASK_ID="$id" | jq -r 'select(.TASK_STATE) | .TASK_STATE' | tr '\n' ' ')
types=$(sd journalctl --no-pager -o json TASK_ID="$id" | jq -r 'select(.TASK_STATE) | .TASK_TYPE' | sort -u | tr '\n' ' ')
check "its events' TASK_STATE: received pending in_progress (x2) pending done ($states)" \
    test "$states" = "received pending in_progress in_progress pending in_progress in_progress done "
check "  each with TASK_TYPE=convert_video_to_libx265 ($types)" test "$types" = "convert_video_to_libx265 "
check "journalctl TASK_STATE=done TASK_ID= finds its last move" \
    grep -q "moved from=in_progress to=done" <<<"$(sd journalctl --no-pager -o cat TASK_STATE=done TASK_ID="$id")"

# systemctl reload: a task type added to the config runs, in the real sandbox, without a restart.
pids_before=$(for d in rest queue convert callback; do sd_ctl show -P MainPID "taskmill-$d.service"; done | tr '\n' ' ')
sd sh -c 'printf "[type.hello]\nkind = exec\ncommand = /bin/echo hello {who}\ninput = none\nparam.who = string:20\n" >>/run/taskmill-test.conf'
sd_ctl reload taskmill-rest taskmill-queue taskmill-convert taskmill-callback
pids_after=$(for d in rest queue convert callback; do sd_ctl show -P MainPID "taskmill-$d.service"; done | tr '\n' ' ')
check "systemctl reload keeps the daemons ($pids_after)" test "$pids_before" = "$pids_after"
for _ in $(seq 50); do
    sd_curl http://127.0.0.1:8080/v1/task-types | jq -e '.task_types | any(.name == "hello")' >/dev/null && break
    sleep 0.1
done
hid=$(sd_curl -H 'Content-Type: application/json' -d '{"task_type":"hello","params":{"who":"systemd"}}' \
    http://127.0.0.1:8080/v1/tasks | jq -r .id)
for _ in $(seq 100); do
    s=$(sd_curl "http://127.0.0.1:8080/v1/tasks/$hid" | jq -r .state)
    [ "$s" = done ] || [ "$s" = failed ] && break
    sleep 0.1
done
check "after the reload an exec task of the new type runs under the units ($s)" test "$s" = done
check "  and its result is the program's stdout" \
    test "$(sd_curl "http://127.0.0.1:8080/v1/tasks/$hid/result")" = "hello systemd"
sd_curl -X DELETE "http://127.0.0.1:8080/v1/tasks/$hid"

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

# Conversion nodes (docs/cluster.md) under their units: nats-server (a transient unit),
# taskmill-cluster and a taskmill-node on this same machine; with the local pool stopped the
# node converts a clip, in its own sandbox, and both stop cleanly.
sd sh -c 'printf "listen: 127.0.0.1:4222\njetstream { store_dir: /var/lib/tm-nats }\n" >/run/tm-nats.conf'
sd systemd-run --unit=tm-nats --property=Type=exec nats-server -c /run/tm-nats.conf >/dev/null
for _ in $(seq 100); do sd bash -c 'exec 3<>/dev/tcp/127.0.0.1/4222' 2>/dev/null && break; sleep 0.1; done
sd_ctl stop taskmill-convert.service
sd_ctl start taskmill-cluster.service taskmill-node.service || true # the checks say which failed
for d in cluster node; do
    check "taskmill-$d is active" sd_ctl is-active --quiet "taskmill-$d.service"
done
ffmpeg -v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -t 2 -c:v libx264 -preset ultrafast \
    "$T/remote.mp4"
nid=$(sd_curl -F task_type=convert_video_to_libx265 -F "file_data=@$T_IN/remote.mp4" \
    http://127.0.0.1:8080/v1/tasks | jq -r .id)
for _ in $(seq 300); do
    s=$(sd_curl "http://127.0.0.1:8080/v1/tasks/$nid" | jq -r .state)
    [ "$s" = done ] || [ "$s" = failed ] && break
    sleep 0.2
done
check "the node converted a clip under its unit ($s)" test "$s" = done
check "  on the node (history host: $(sd_curl "http://127.0.0.1:8080/v1/tasks/$nid" | jq -r '.history[0].host'))" \
    test "$(sd_curl "http://127.0.0.1:8080/v1/tasks/$nid" | jq -r '.history[0].host')" = sd-node
sd_ctl stop taskmill-node.service taskmill-cluster.service
for d in node cluster; do
    check "taskmill-$d stopped with Result=success" test "$(sd_ctl show -P Result "taskmill-$d.service")" = success
done
sd_ctl stop tm-nats.service
sd_ctl start taskmill-convert.service

sd_ctl stop taskmill.target
for d in rest callback convert queue init; do
    check "taskmill-$d stopped with Result=success" test "$(sd_ctl show -P Result "taskmill-$d.service")" = success
    check "taskmill-$d is inactive" test "$(sd_ctl is-active "taskmill-$d.service" || true)" = inactive
done
# systemd stopped init last: it logged its shutdown cleanup after convert's last line.
sd journalctl --sync
last=$(sd journalctl --no-pager -o cat SYSLOG_IDENTIFIER=taskmill-init | tail -n 3)
check "init ran its shutdown cleanup" grep -q "shutdown cleanup" <<<"$last"
