#!/usr/bin/env python3
"""bench/fill_done.py TEMPLATE_DIR DONE_DIR FROM TO STEP_NS - clones a real finished task.

Writes the job folders of clones FROM..TO-1 into DONE_DIR (meant for a stopped server). A clone
is the template's folder (a task that finished through the API) with a fresh UUID and every
time moved back by the same amount: clone k is created (1 + LAST - k) * STEP_NS before the
template, LAST being $FILL_LAST (default TO), the largest index any call writes. So calls can
add to earlier ones, every clone is older than the template, and creation times increase with
k. In the template's JSON files every non-zero *_ns integer and every *_at RFC 3339 string moves
by that amount and the template's id is replaced wherever it is a whole value; other files are
copied byte for byte. Plain writes, no fsync (the bench syncs once afterwards).
"""
import datetime
import json
import os
import sys
import uuid


def parse_at(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def fmt_at(d):
    return d.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def plan(v, key, tid):
    """Returns a function (delta_ns, new_id) -> value for the template value v."""
    if isinstance(v, dict):
        parts = [(k, plan(x, k, tid)) for k, x in v.items()]
        return lambda d, i: {k: f(d, i) for k, f in parts}
    if isinstance(v, list):
        parts = [plan(x, key, tid) for x in v]
        return lambda d, i: [f(d, i) for f in parts]
    if isinstance(v, int) and not isinstance(v, bool) and key.endswith("_ns") and v:
        return lambda d, i: v + d
    if isinstance(v, str) and v == tid:
        return lambda d, i: i
    if isinstance(v, str) and key.endswith("_at"):
        try:
            t = parse_at(v)
        except ValueError:
            return lambda d, i: v
        return lambda d, i: fmt_at(t + datetime.timedelta(microseconds=d // 1000))
    return lambda d, i: v


def main():
    tdir, done, first, to, step = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    last = int(os.environ.get("FILL_LAST", to))
    tid = os.path.basename(os.path.normpath(tdir))
    with open(os.path.join(tdir, "request.json")) as f:
        created = json.load(f)["created_ns"]
    dmode = os.stat(tdir).st_mode & 0o7777
    files = []
    for name in sorted(os.listdir(tdir)):
        path = os.path.join(tdir, name)
        mode = os.stat(path).st_mode & 0o7777
        with open(path, "rb") as f:
            raw = f.read()
        if name.endswith(".json"):
            text = raw.decode()
            files.append((name, mode, plan(json.loads(text), "", tid), text.endswith("\n")))
        else:
            files.append((name, mode, raw, False))
    for k in range(first, to):
        delta = -(1 + last - k) * step
        nid = str(uuid.uuid4())
        d = os.path.join(done, nid)
        os.mkdir(d, dmode)
        for name, mode, body, nl in files:
            if callable(body):
                data = (json.dumps(body(delta, nid), indent=2) + ("\n" if nl else "")).encode()
            else:
                data = body
            fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            os.write(fd, data)
            os.close(fd)
        os.chmod(d, dmode)


if __name__ == "__main__":
    main()
