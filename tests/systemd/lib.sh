# tests/systemd/lib.sh - boots a private systemd as PID 1 in its own pid, mount and network
# namespaces, with the taskmill units (paths pointed at the build tree) in a tmpfs on /run, and
# tmpfs mounts on /tmp, /var/tmp, /var/lib and /var/log: the mount namespace shares the host's
# disk, and a booting systemd cleans /tmp (tmpfiles) and writes state under /var. The build tree
# is bind-mounted at /run/tm-build first, so a checkout under /tmp or /var works too ($T is
# $T_IN inside). Every early unit that could touch the host (sysctl, remount-fs, tmpfiles,
# binfmt, udev, ...) is masked. Sourcing it defines: sd_boot, sd (run a command inside), sd_ctl
# (systemctl inside), sd_curl, sd_kill. The EXIT trap kills that systemd (SIGKILL by pid, as
# PID 1 ignores SIGTERM) and removes the temporary files.
set -euo pipefail
: "${TASKMILL_BUILD:?}" "${TASKMILL_SRC:?}"

# Under the build tree, not /tmp: /tmp is a fresh tmpfs inside the namespace.
T=$(mktemp -d "$TASKMILL_BUILD/sd-test.XXXXXX")
chmod 755 "$T"
BUILD_IN=/run/tm-build # the build tree inside the namespace
T_IN=$BUILD_IN/$(basename "$T")
UNITS=$T/units
mkdir -p "$UNITS"
SD_PID=""
FAILS=0
fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

sd_kill() {
    [ -n "$SD_PID" ] && kill -KILL "$SD_PID" 2>/dev/null || true
    [ -n "${UNSHARE_PID:-}" ] && wait "$UNSHARE_PID" 2>/dev/null || true
    SD_PID=""
}

sd_finish() {
    local rc=$?
    if [ $FAILS -ne 0 ] || [ $rc -ne 0 ]; then
        echo "--- journal" >&2
        [ -n "$SD_PID" ] && sd journalctl --no-pager -n 80 >&2 2>/dev/null || true
    fi
    sd_kill
    rm -rf "$T"
    if [ $FAILS -ne 0 ] || [ $rc -ne 0 ]; then
        echo "$(basename "$0"): $FAILS failed" >&2
        exit 1
    fi
    echo "$(basename "$0"): all passed"
}
trap sd_finish EXIT

# The units as installed, but with ExecStart in the build tree and a test config.
sd_units() {
    local u
    cat >"$T/taskmill.conf" <<EOC
[paths]
root = /var/lib/taskmill
runtime_dir = /run/taskmill
[rest]
listen = 127.0.0.1:8080
[convert]
preset = ${SD_PRESET:-ultrafast}
$(printf '%s\n' "${SD_EXTRA_CONF[@]:-}")
[cluster]
nats_url = nats://127.0.0.1:4222
[node]
server = http://127.0.0.1:8080
token = unused-without-tokens
workers = 1
host = sd-node
EOC
    chmod 644 "$T/taskmill.conf"
    for u in init queue convert callback rest cluster node; do
        sed -e "s|@SBINDIR@|$BUILD_IN|" -e "s|@SYSCONFDIR@/taskmill/taskmill.conf|$T/taskmill.conf|" \
            "$TASKMILL_SRC/systemd/taskmill-$u.service.in" >"$UNITS/taskmill-$u.service"
        sed -i "s|$T/taskmill.conf|/run/taskmill-test.conf|" "$UNITS/taskmill-$u.service"
    done
    # The client PC's units, pointed at the build tree and a client config for this server.
    cat >"$T/client.conf" <<EOC
[client]
server = http://127.0.0.1:8080
folder = /var/lib/videos
settle_seconds = 0
EOC
    chmod 644 "$T/client.conf"
    sed -e "s|@BINDIR@|$BUILD_IN|" -e "s|@DOCDIR@|/usr/share/doc/taskmill|" \
        -e "s|/etc/taskmill/client.conf|/run/taskmill-client-test.conf|" \
        "$TASKMILL_SRC/systemd/taskmill-client.service.in" >"$UNITS/taskmill-client.service"
    sed -e "s|/etc/taskmill/client.conf|/run/taskmill-client-test.conf|" \
        "$TASKMILL_SRC/systemd/taskmill-client.timer" >"$UNITS/taskmill-client.timer"
    # A sanitizer build: LeakSanitizer stops the world with ptrace, which the units' syscall
    # filter forbids; leaks are checked by the integration tests outside systemd instead.
    if grep -q '^TASKMILL_SANITIZE:BOOL=ON' "$TASKMILL_BUILD/CMakeCache.txt" 2>/dev/null; then
        for u in "$UNITS"/taskmill-*.service; do
            printf '\n[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n' >>"$u"
        done
    fi
    cp "$TASKMILL_SRC/systemd/taskmill.target" "$UNITS/"
    # A target to boot into that starts nothing of ours: the test starts taskmill.target itself.
    # DefaultDependencies=no: nothing of sysinit.target (tmpfiles, udev, ...) runs.
    printf '[Unit]\nDescription=test boot\nDefaultDependencies=no\n' >"$UNITS/tm-boot.target"
    # Early units that act on the host's kernel, disks or /dev: masked (runtime masks in /run).
    for u in "${SD_MASKED[@]}"; do ln -sf /dev/null "$UNITS/$u"; done
}
SD_MASKED=(systemd-sysctl.service systemd-remount-fs.service systemd-tmpfiles-setup.service
    systemd-tmpfiles-setup-dev.service systemd-tmpfiles-clean.service systemd-tmpfiles-clean.timer
    systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount
    systemd-random-seed.service systemd-machine-id-commit.service systemd-firstboot.service
    systemd-journal-flush.service systemd-update-utmp.service systemd-update-utmp-runlevel.service
    systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service
    systemd-hwdb-update.service systemd-modules-load.service modprobe@.service
    systemd-journal-catalog-update.service ldconfig.service systemd-sysusers.service
    systemd-pstore.service sys-kernel-config.mount sys-kernel-debug.mount
    sys-kernel-tracing.mount sys-fs-fuse-connections.mount dev-hugepages.mount dev-mqueue.mount)

sd_boot() {
    sd_units
    unshare --pid --fork --mount-proc --mount --net bash -c "
        mount --make-rprivate /
        mount -t tmpfs tmpfs /run
        mkdir -p /run/systemd/system $BUILD_IN
        mount --bind $TASKMILL_BUILD $BUILD_IN
        cp -P $UNITS/* /run/systemd/system/
        cp $T/taskmill.conf /run/taskmill-test.conf
        cp $T/client.conf /run/taskmill-client-test.conf
        for d in /tmp /var/tmp /var/lib /var/log; do mount -t tmpfs tmpfs \$d; done
        exec /lib/systemd/systemd --system --unit=tm-boot.target
    " </dev/null >"$T/systemd.out" 2>&1 &
    UNSHARE_PID=$!
    local i
    for i in $(seq 100); do
        SD_PID=$(pgrep -P "$UNSHARE_PID" -x systemd || true)
        [ -n "$SD_PID" ] && break
        sleep 0.1
    done
    [ -n "$SD_PID" ] || { echo "systemd did not start" >&2; cat "$T/systemd.out" >&2; return 1; }
    for i in $(seq 100); do
        sd systemctl is-system-running 2>/dev/null | grep -qE 'running|degraded' && break
        sleep 0.1
    done
    sd systemctl start systemd-journald.socket systemd-journald.service
}

sd() { nsenter -t "$SD_PID" -m -p -n "$@"; }
sd_ctl() { sd systemctl "$@"; }
sd_curl() { sd curl -s -S "$@"; }
