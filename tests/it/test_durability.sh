#!/usr/bin/env bash
# test_durability.sh - the fsync order of docs/durability.md, seen in the system calls: rest and
# the queue run under strace, one small task is uploaded and converted, and the trace must show
#   rest:  fsync(upload.partial) -> rename to input.<ext> -> fsync(.tmp.request.json) -> rename
#          to request.json -> fsync(the job folder) -> renameat2(request/.tmp-<id>, request/<id>,
#          NOREPLACE) -> fsync(request/) -> job.submitted -> only then "201 Created" on the
#          client's socket;
#   queue: for request->pending, pending->in_progress and in_progress->done, renameat2(from/<id>,
#          to/<id>, NOREPLACE) -> fsync(to/) -> fsync(from/), with nothing sent on any socket in
#          between, and the acknowledgement (the "ok" to rest's job.submitted, the work.assign,
#          the job.finished) only after both fsyncs.
# A dropped fsync in jobdir_publish, jobdir_move or file_write_atomic fails it. The file
# descriptors are followed by their paths (strace -yy); the check is the python below.
# A missing strace is a setup error, not a reason to skip (scripts/deps --test installs it).
if ! command -v strace >/dev/null; then
    echo "FAIL: strace is not installed (scripts/deps --test installs it)" >&2
    exit 1
fi
. "$(dirname "$0")/lib.sh"
STRACE_SET=fsync,fdatasync,rename,renameat,renameat2,write,writev,sendmsg,sendto
declare -A TRACED # NAME -> the strace process (TM_PID[NAME] is the same pid)
# A sanitizer build: LeakSanitizer stops the world with ptrace, which fails under strace; the
# other integration tests check for leaks.
SAN_ENV=()
if grep -q '^TASKMILL_SANITIZE:BOOL=ON' "$TASKMILL_BUILD/CMakeCache.txt" 2>/dev/null; then
    SAN_ENV=("ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
fi

# traced_start NAME: taskmill-NAME under strace -f, like tm_start: its own session, the test's
# config, ready once its log says it started. The trace goes to $W/NAME.trace.
traced_start() {
    local name=$1 log="$TM_LOG/$1.log" i before
    : >>"$log"
    before=$(grep -c ': started (config' "$log" || true)
    setsid strace -f -tt -yy -s 512 -e trace=$STRACE_SET -o "$W/$name.trace" \
        env "${SAN_ENV[@]}" "$TM_BIN/taskmill-$name" --config "$TM_CONF" 2>>"$log" &
    TM_PID[$name]=$!
    TRACED[$name]=$!
    for ((i = 0; i < 600; i++)); do
        [ "$(grep -c ': started (config' "$log" || true)" -gt "$before" ] && return 0
        if ! kill -0 "${TM_PID[$name]}" 2>/dev/null; then
            echo "taskmill-$name (traced) failed to start:" >&2
            tail -n 20 "$log" >&2
            return 1
        fi
        sleep 0.05
    done
    echo "taskmill-$name (traced) did not become ready in 30 s" >&2
    return 1
}

# The daemon is strace's only child; strace exits with the daemon's exit status.
traced_daemon_pid() {
    cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -m1 . || true
}

# tm_stop, also for a traced daemon: SIGTERM to the daemon itself (strace would pass a SIGTERM
# on too, but then detach and not report the daemon's own exit status), then wait for strace.
eval "$(declare -f tm_stop | sed '1s/^tm_stop /tm_stop_plain /')"
tm_stop() {
    local name=$1 spid=${TRACED[$1]:-} dpid rc=0
    [ -n "$spid" ] || {
        tm_stop_plain "$name"
        return
    }
    dpid=$(traced_daemon_pid "$spid")
    if [ -n "$dpid" ]; then kill -TERM "$dpid" 2>/dev/null || true; else kill -TERM "$spid" 2>/dev/null || true; fi
    wait "$spid" || rc=$?
    unset "TM_PID[$name]" "TRACED[$name]"
    return $rc
}

# trace_check rest TRACE DATA ID | queue TRACE DATA ID REST_TRACE: checks one daemon's trace
# against docs/durability.md; prints the steps it found (trace line numbers) or what is wrong.
trace_check() {
    python3 - "$@" <<'PY'
import codecs, json, re, sys

LINE = re.compile(r'^(\d+)\s+\d\d:\d\d:\d\d\.\d+\s+(.*)$')
CALL = re.compile(r'^(\w+)\((.*)\)\s+=\s+(-?\d+|\?)(.*)$', re.S)
FD = r'(\d+)<(.*?)>'
STR = r'"((?:[^"\\]|\\.)*)"'
RENAMEAT = re.compile(r'^' + FD + r', ' + STR + r', ' + FD + r', ' + STR + r'(?:, (\S+))?$')
SOCKET = ('TCP:', 'TCPv6:', 'UDP:', 'UDPv6:', 'UNIX:', 'socket:', 'NETLINK:')


def unescape(s):
    return codecs.escape_decode(s.encode('latin-1'))[0].decode('utf-8', 'replace')


class Ev:
    """One system call: its name, raw arguments, return value, and the trace lines where it
    started and where it returned (a call another thread interrupts is split in two lines)."""

    def __init__(self, pid, name, args, ret, start, end):
        self.pid, self.name, self.args, self.ret, self.start, self.end = pid, name, args, ret, start, end
        self.fd_path, tail = None, args
        m = re.match(r'^' + FD + r'(?:, |$)', args)
        if m:
            self.fd_path, tail = m.group(2), args[m.end():]
        # The strings passed (after the fd, whose annotation may hold a socket's path).
        self.strings = [unescape(x) for x in re.findall(STR, tail)]
        self.data = ''.join(self.strings)

    def ok(self):
        return self.ret == '0' or (self.ret.isdigit() and int(self.ret) >= 0)

    def is_sync(self):
        return self.name in ('fsync', 'fdatasync')

    def is_send(self):
        return self.name in ('write', 'writev', 'sendto', 'sendmsg') and bool(self.fd_path) and \
            self.fd_path.startswith(SOCKET)

    def rename(self):
        """(old dir, old name, new dir, new name, flags) of a rename call, else None."""
        if self.name in ('renameat', 'renameat2'):
            m = RENAMEAT.match(self.args)
            if m:
                return m.group(2), unescape(m.group(3)), m.group(5), unescape(m.group(6)), m.group(7) or ''
        if self.name == 'rename':
            m = re.match(r'^' + STR + r', ' + STR + r'$', self.args)
            if m:
                return '', unescape(m.group(1)), '', unescape(m.group(2)), ''
        return None

    def __str__(self):
        return 'line %d: %s(%s) = %s' % (self.start, self.name, self.args[:160], self.ret)


def parse(path):
    events, pending = [], {}
    with open(path, encoding='latin-1') as f:
        for n, raw in enumerate(f, 1):
            m = LINE.match(raw.rstrip('\n'))
            if not m:
                continue
            pid, rest = int(m.group(1)), m.group(2)
            if rest.startswith(('+++', '---')):
                continue
            r = re.match(r'^<\.\.\. (\w+) resumed>(.*)$', rest)
            if r:
                if pid not in pending:
                    continue
                name, args, start = pending.pop(pid)
                rest, end = name + '(' + args + r.group(2), n
            elif rest.endswith('<unfinished ...>'):
                pending[pid] = (re.match(r'^(\w+)\(', rest).group(1),
                                rest[rest.index('(') + 1:-len('<unfinished ...>')].rstrip(), n)
                continue
            else:
                start = end = n
            c = CALL.match(rest)
            if c:
                events.append(Ev(pid, c.group(1), c.group(2), c.group(3), start, end))
    events.sort(key=lambda e: e.end)
    return events


errors = []


def need(cond, what):
    if not cond:
        errors.append(what)
    return cond


def first(events, pred, after=0):
    """The first call that starts after trace line `after` and satisfies pred."""
    for e in events:
        if e.start > after and pred(e):
            return e
    return None


def sync_of(path):
    return lambda e: e.is_sync() and e.fd_path == path


def ipc_messages(events):
    """(event, message) for each JSON message sent on a Unix socket."""
    out = []
    for e in events:
        if e.is_send() and e.fd_path.startswith(('UNIX:', 'socket:')):
            try:
                out.append((e, json.loads(e.data)))
            except ValueError:
                pass
    return out


def unix_ends(path):
    """(this end's inode, the peer's inode or None) of a Unix socket strace -yy named."""
    m = re.match(r'^(?:UNIX|socket):\[(\d+)(?:->(\d+))?', path)
    return (m.group(1), m.group(2)) if m else (None, None)


def same_connection(ours, theirs):
    """Whether two socket annotations can be the two ends of one connection (strace does not
    always resolve the peer: then one matching inode is enough)."""
    a, b = unix_ends(ours), unix_ends(theirs)
    if a[1] and b[1]:
        return a == (b[1], b[0])
    return (a[1] is not None and a[1] == b[0]) or (b[1] is not None and b[1] == a[0])


def step(name, e):
    print('  %-44s %s' % (name, e if e else 'MISSING'))
    return e


def check_rest(trace, data, jid):
    ev = parse(trace)
    tmp = '%s/request/.tmp-%s' % (data, jid)
    print('rest, task %s:' % jid)
    writes = [e for e in ev if e.name in ('write', 'writev') and e.fd_path == tmp + '/upload.partial']
    f1 = step('1 fsync(upload.partial)', first(ev, sync_of(tmp + '/upload.partial')))
    r1 = step('2 rename upload.partial -> input.<ext>', first(ev, lambda e: e.rename() and
              e.rename()[0] == tmp and e.rename()[1] == 'upload.partial' and
              re.match(r'^input(\.[a-z0-9]+)?$', e.rename()[3])))
    f2 = step('3 fsync(.tmp.request.json)', first(ev, sync_of(tmp + '/.tmp.request.json')))
    r2 = step('4 rename .tmp.request.json -> request.json', first(ev, lambda e: e.rename() and
              e.rename()[:2] == (tmp, '.tmp.request.json') and e.rename()[3] == 'request.json'))
    f3 = step('5 fsync(the job folder .tmp-<id>)', r2 and first(ev, sync_of(tmp), r2.end))
    pub = step('6 renameat2 request/.tmp-<id> -> request/<id>', first(ev, lambda e:
               e.name == 'renameat2' and e.rename() and e.rename()[0] == data and
               e.rename()[1] == 'request/.tmp-' + jid and e.rename()[3] == 'request/' + jid))
    f4 = step('7 fsync(request/)', pub and first(ev, sync_of(data + '/request'), pub.end))
    # Sockets by what is sent on them: strace names the kind of socket when it can resolve it.
    sub = step('8 job.submitted to the queue', first(ev, lambda e: e.is_send() and
               '"job.submitted"' in e.data and jid in e.data))
    ok201 = step('9 201 Created to the client', first(ev, lambda e: e.is_send() and
                 e.data.startswith('HTTP/1.1 201') and
                 ('/v1/tasks/' + jid) in e.data))
    for name, e in (('fsync(upload.partial)', f1), ('rename to input.<ext>', r1),
                    ('fsync(.tmp.request.json)', f2), ('rename to request.json', r2),
                    ('fsync(.tmp-<id>)', f3), ('publish renameat2', pub), ('fsync(request/)', f4),
                    ('job.submitted', sub), ('201', ok201)):
        if need(e is not None, 'no %s in the trace' % name):
            need(e.ok(), '%s failed: %s' % (name, e))
    need(pub is None or 'RENAME_NOREPLACE' in pub.rename()[4], 'the publish rename is not RENAME_NOREPLACE')
    chain = [('the last write of the upload', writes[-1] if writes else None), ('fsync(upload.partial)', f1),
             ('its rename to input.<ext>', r1), ('fsync(.tmp.request.json)', f2),
             ('the rename to request.json', r2), ('fsync(.tmp-<id>)', f3),
             ('the publish renameat2', pub), ('fsync(request/)', f4), ('job.submitted', sub),
             ('the 201', ok201)]
    for (an, a), (bn, b) in zip(chain, chain[1:]):
        if a and b:
            need(a.end < b.start, '%s (line %d) does not come after %s (line %d)' % (bn, b.start, an, a.end))
    # Nothing of the answer reaches the client before the job is durable.
    if f4 and ok201:
        early = [e for e in ev if e.is_send() and e.fd_path == ok201.fd_path and e.start < f4.end]
        need(not early, 'something was sent to the uploading client before fsync(request/): %s'
             % (early[0] if early else ''))
    return sub


def check_queue(trace, data, jid, rest_trace):
    ev = parse(trace)
    msgs = ipc_messages(ev)
    # rest's job.submitted for this task: its rid, and the two ends of rest's socket.
    sub = [(e, m) for e, m in ipc_messages(parse(rest_trace))
           if m.get('type') == 'job.submitted' and m.get('id') == jid]
    need(sub, "no job.submitted for the task in rest's trace")
    print('queue, task %s:' % jid)
    assign = None
    for frm, to in (('request', 'pending'), ('pending', 'in_progress'), ('in_progress', 'done')):
        what = '%s -> %s' % (frm, to)
        mv = step(what + ': renameat2', first(ev, lambda e: e.name == 'renameat2' and e.rename() and
                  e.rename()[0] == data and e.rename()[1] == '%s/%s' % (frm, jid) and
                  e.rename()[3] == '%s/%s' % (to, jid)))
        if not need(mv is not None, what + ': no renameat2 of the job folder'):
            continue
        need(mv.ok(), what + ': the rename failed: %s' % mv)
        need('RENAME_NOREPLACE' in mv.rename()[4], what + ': not RENAME_NOREPLACE')
        # The next two syncs of that thread, before it renames anything else, are the two
        # parent folders.
        nxt = first(ev, lambda e: e.pid == mv.pid and e.rename() is not None, mv.end)
        syncs = [e for e in ev if e.pid == mv.pid and e.is_sync() and e.start > mv.end and
                 (nxt is None or e.end < nxt.start)][:2]
        s_to = step(what + ': fsync(%s/)' % to, syncs[0] if syncs else None)
        s_from = step(what + ': fsync(%s/)' % frm, syncs[1] if len(syncs) > 1 else None)
        got = sorted(e.fd_path for e in syncs)
        want = sorted([data + '/' + to, data + '/' + frm])
        if not need(got == want, what + ': the syncs after the rename are %s, not of %s/ and %s/'
                    % ([e.fd_path for e in syncs], to, frm)):
            continue
        need(all(e.ok() for e in syncs), what + ': an fsync failed')
        need(syncs[0].fd_path == data + '/' + to, what + ': fsync(%s/) is not first (docs/durability.md)' % to)
        durable = syncs[1].end
        told = [e for e in ev if e.is_send() and mv.start < e.start < durable]
        need(not told, what + ': a message was sent before both folders were synced: %s'
             % (told[0] if told else ''))
        # The acknowledgement of this move, which must follow both fsyncs.
        if frm == 'request':
            ack = None
            if sub:
                ack = first([e for e, m in msgs if m.get('type') == 'ok' and m.get('rid') == sub[0][1].get('rid')
                             and same_connection(e.fd_path, sub[0][0].fd_path)], lambda e: True, mv.start)
            ack = step(what + ': "ok" to rest\'s job.submitted', ack)
        elif frm == 'pending':
            ack = assign = step(what + ': work.assign', first([e for e, m in msgs
                                if m.get('type') == 'work.assign' and m.get('id') == jid], lambda e: True))
        else:
            ack = step(what + ': job.finished', first([e for e, m in msgs if m.get('type') == 'job.finished'
                       and m.get('id') == jid and m.get('state') == 'done'], lambda e: True))
            done_ok = assign and step(what + ': "ok" to the converter\'s work.done', first([e for e, m in msgs
                                      if m.get('type') == 'ok' and e.fd_path == assign.fd_path], lambda e: True, mv.start))
            need(not assign or done_ok, what + ': the work.done is not answered')
            need(not done_ok or done_ok.start > durable, what + ': work.done answered before both fsyncs ended')
        if need(ack is not None, what + ': no acknowledgement found'):
            need(ack.start > durable, what + ': acknowledged (line %d) before both fsyncs ended (line %d)'
                 % (ack.start, durable))


mode, trace, data, jid = sys.argv[1:5]
if mode == 'rest':
    check_rest(trace, data, jid)
else:
    check_queue(trace, data, jid, sys.argv[5])
for e in errors:
    print('ORDER: ' + e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

write_conf
for n in "${TM_ORDER_START[@]}"; do
    case $n in
    queue | rest) traced_start "$n" ;;
    *) tm_start "$n" ;;
    esac
done

make_mp4 "$FIX/clip.mp4" 1 160x120
id=$(submit "$FIX/clip.mp4")
check "the task is accepted ($id)" test -n "$id"
check "the task is done" wait_state "$id" done 60
check "rest stops cleanly under strace" tm_stop rest
check "the queue stops cleanly under strace" tm_stop queue

check "rest's trace: upload fsync, renames, request.json, publish, fsync(request/), then 201" \
    trace_check rest "$W/rest.trace" "$ROOT/data" "$id"
check "the queue's trace: each move is renameat2, fsync(to/), fsync(from/), then acknowledged" \
    trace_check queue "$W/queue.trace" "$ROOT/data" "$id" "$W/rest.trace"
if [ -n "${TASKMILL_KEEP_TRACES:-}" ]; then
    mkdir -p "$TASKMILL_KEEP_TRACES" && cp "$W"/*.trace "$TASKMILL_KEEP_TRACES/"
fi
