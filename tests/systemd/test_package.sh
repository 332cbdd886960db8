#!/usr/bin/env bash
# test_package.sh - the Debian packages as an admin gets them: cpack makes taskmill and
# taskmill-client .debs of this build (their control files: names, dependencies from
# dpkg-shlibdeps, the config a conffile), dpkg installs both into a private systemd's world (an
# overlay over /usr, /etc and /var, so the host is untouched), and `systemctl enable --now
# taskmill.target` - what docs/systemd.md shows first - runs a server that converts a clip.
# Skipped without root, and for a sanitizer build (the packaged programs would be those).
if [ "$(id -u)" -ne 0 ]; then
    echo "skipped: needs root for namespaces"
    exit 77
fi
if grep -q '^TASKMILL_SANITIZE:BOOL=ON' "$TASKMILL_BUILD/CMakeCache.txt" 2>/dev/null; then
    echo "skipped: a sanitizer build is not packaged"
    exit 77
fi
. "$(dirname "$0")/lib.sh"

PKG=$T/pkg
(cd "$TASKMILL_BUILD" && cpack -G DEB -B "$PKG" >"$T/cpack.log" 2>&1) || { cat "$T/cpack.log" >&2; fail "cpack"; exit 1; }
SERVER=$(ls "$PKG"/taskmill_*.deb) CLIENT=$(ls "$PKG"/taskmill-client_*.deb)
field() { dpkg-deb --field "$1" "$2"; }
check "the server package is taskmill ($(field "$SERVER" Package))" test "$(field "$SERVER" Package)" = taskmill
check "the client package is taskmill-client" test "$(field "$CLIENT" Package)" = taskmill-client
for lib in libmicrohttpd12 libjansson4 libavcodec59 libnats3.4 libsqlite3-0 libsystemd0; do
    check "taskmill depends on $lib" grep -q "$lib" <<<"$(field "$SERVER" Depends)"
done
check "taskmill-client depends on libcurl4" grep -q libcurl4 <<<"$(field "$CLIENT" Depends)"
check "/etc/taskmill/taskmill.conf is a conffile" \
    test "$(dpkg-deb --ctrl-tarfile "$SERVER" | tar -xO ./conffiles)" = /etc/taskmill/taskmill.conf
contents=$(dpkg-deb --contents "$SERVER" | awk '{print $6}')
for f in ./usr/sbin/taskmill-queue ./usr/lib/systemd/system/taskmill.target \
    ./usr/share/man/man5/taskmill.conf.5 ./usr/share/doc/taskmill/architecture.md; do
    check "taskmill ships $f" grep -qx -- "$f" <<<"$contents"
done
check "its units run /usr/sbin/taskmill-* with /etc/taskmill/taskmill.conf" \
    grep -qx 'ExecStart=/usr/sbin/taskmill-queue --config /etc/taskmill/taskmill.conf' \
    <<<"$(dpkg-deb --fsys-tarfile "$SERVER" | tar -xO ./usr/lib/systemd/system/taskmill-queue.service)"

# The world the packages are installed into: the host's /usr, /etc and /var under overlays whose
# upper layers live in a tmpfs, the runtime masks of lib.sh, and a boot target of our own.
sd_units
rm -f "$UNITS"/taskmill-*.service "$UNITS"/taskmill.target "$UNITS"/taskmill-client.* # dpkg brings them
unshare --pid --fork --mount-proc --mount --net bash -c "
    set -e
    mount --make-rprivate /
    mount -t tmpfs tmpfs /run
    mkdir -p /run/tm-ov
    for d in usr etc var; do
        mkdir -p /run/tm-ov/\$d.up /run/tm-ov/\$d.work
        mount -t overlay overlay -o lowerdir=/\$d,upperdir=/run/tm-ov/\$d.up,workdir=/run/tm-ov/\$d.work /\$d
    done
    mkdir -p $BUILD_IN && mount --bind $TASKMILL_BUILD $BUILD_IN
    for d in /tmp /var/tmp /var/log; do mount -t tmpfs tmpfs \$d; done
    dpkg -i $T_IN/pkg/taskmill_*.deb $T_IN/pkg/taskmill-client_*.deb >$T_IN/dpkg.log 2>&1
    mkdir -p /run/systemd/system
    cp -P $T_IN/units/* /run/systemd/system/
    exec /lib/systemd/systemd --system --unit=tm-boot.target
" </dev/null >"$T/systemd.out" 2>&1 &
UNSHARE_PID=$!
for _ in $(seq 300); do
    SD_PID=$(pgrep -P "$UNSHARE_PID" -x systemd || true)
    [ -n "$SD_PID" ] && break
    sleep 0.1
done
if [ -z "$SD_PID" ]; then
    fail "systemd did not start"
    cat "$T/systemd.out" "$T/dpkg.log" >&2 2>/dev/null || true
    exit 1
fi
for _ in $(seq 100); do
    sd systemctl is-system-running 2>/dev/null | grep -qE 'running|degraded' && break
    sleep 0.1
done
sd systemctl start systemd-journald.socket systemd-journald.service
check "dpkg installed taskmill ($(sd dpkg-query -W -f '${Status}' taskmill))" \
    test "$(sd dpkg-query -W -f '${Status}' taskmill)" = "install ok installed"
check "  and taskmill-client" test "$(sd dpkg-query -W -f '${Status}' taskmill-client)" = "install ok installed"
check "the config is in /etc/taskmill/taskmill.conf" sd test -s /etc/taskmill/taskmill.conf

# What docs/systemd.md shows first.
sd_ctl enable --now taskmill.target >"$T/enable.log" 2>&1 || fail "systemctl enable --now taskmill.target: $(cat "$T/enable.log")"
check "taskmill.target is enabled" test "$(sd_ctl is-enabled taskmill.target)" = enabled
for d in init queue convert callback rest; do
    check "taskmill-$d is active" sd_ctl is-active --quiet "taskmill-$d.service"
done
for _ in $(seq 100); do
    [ "$(sd_curl -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/healthz 2>/dev/null)" = 200 ] && break
    sleep 0.1
done
check "healthz is 200" test "$(sd_curl -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/healthz)" = 200
ffmpeg -v error -y -f lavfi -i testsrc2=size=320x240:rate=25 -t 2 -c:v libx264 -preset ultrafast "$T/clip.mp4"
id=$(sd taskmill --server http://127.0.0.1:8080 submit "$T_IN/clip.mp4" 2>"$T/submit.err") || true
check "/usr/bin/taskmill submits a clip ($id$(cat "$T/submit.err"))" test -n "$id"
check "  and waits for it: done" sd taskmill --server http://127.0.0.1:8080 wait "$id" --timeout 120
check "  and fetches it" sd taskmill --server http://127.0.0.1:8080 fetch "$id" -o /tmp/clip.hevc.mp4
check "  as HEVC" test "$(sd ffprobe -v error -select_streams v -show_entries stream=codec_name -of csv=p=0 /tmp/clip.hevc.mp4)" = hevc
check "man finds taskmill.conf(5) where the package put it" sd test -s /usr/share/man/man5/taskmill.conf.5
# Nothing is stopped by hand: the prerm must stop the running server.
check "dpkg -r taskmill removes it (prerm stops what runs)" sd dpkg -r taskmill taskmill-client
check "  and every taskmill unit is inactive" \
    test -z "$(sd_ctl list-units --state=active --no-legend 'taskmill*' 2>/dev/null)"
check "  and keeps the config (a conffile)" sd test -s /etc/taskmill/taskmill.conf
check "  and no taskmill daemon runs" test -z "$(sd pgrep -f '^/usr/sbin/taskmill-' || true)"
