#!/usr/bin/env python3
"""bench/p8.py - the figures of bench/run's P8 (cluster) section.

  p8.py batch JSONL CFG ROUND DIR T0 HZ OWN_TICKS BUSY_TICKS
      One batch (configuration CFG = a, b or c, round ROUND): DIR holds the task objects
      (ID.json, GET /v1/tasks/ID once all were done) and "encode" (lines "ID SECONDS", the encode
      phase of each job's "phases" log line, "?" when missing); T0 is the first submit (epoch
      seconds); OWN_TICKS the CPU ticks of taskmill's processes and nats-server during the
      batch, BUSY_TICKS the whole machine's. Appends the batch's figures to JSONL as one line,
      and prints them.
  p8.py summary JSONL N PRESET CORES
      Medians over the rounds: lines to print, and the summary rows (lines starting "| ").

Times come from the task objects (the server's clock), so the bench's polling is not in them.
"""
import datetime
import glob
import json
import os
import statistics
import sys

NODES = ("node1", "node2")
LABEL = {"a": "(a) box alone", "b": "(b) 2 nodes only", "c": "(c) box + 2 nodes"}


def at(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def batch(jsonl, cfg, rnd, d, t0, hz, own, busy):
    tasks = [json.load(open(f)) for f in glob.glob(os.path.join(d, "*.json"))]
    enc = {}
    for line in open(os.path.join(d, "encode")):
        i, e = line.split()
        if e != "?":
            enc[i] = float(e)
    bad = [t["id"] for t in tasks if t["state"] != "done"]
    if bad:
        sys.exit(f"p8.py: not done: {' '.join(bad)}")
    last = {t["id"]: (t["history"][-1] if t["history"] else {}) for t in tasks}
    span = {t["id"]: at(t["finished_at"]) - at(t["started_at"]) for t in tasks}
    # A slot's turnaround: from one task's finished_at to the started_at of the next task the
    # same slot (host and slot of its last attempt) took, when that one was waiting already.
    slots, gaps = {}, []
    for t in tasks:
        slots.setdefault((last[t["id"]].get("host"), last[t["id"]].get("slot")), []).append(t)
    for run in slots.values():
        run.sort(key=lambda t: at(t["started_at"]))
        gaps += [at(b["started_at"]) - at(a["finished_at"]) for a, b in zip(run, run[1:])
                 if at(b["created_at"]) < at(a["finished_at"])]
    wall = max(at(t["finished_at"]) for t in tasks) - t0
    ecpu = sum(h.get("cpu_seconds", 0) for h in last.values())
    r = {
        "cfg": cfg, "round": rnd, "n": len(tasks),
        "wall": wall,
        "tpm": len(tasks) / wall * 60,
        # started -> finished, its encode phase, and what is left: queue, fork and jail, verify,
        # store; on a node also publish, start, the input's download, the result's upload and
        # the finish.
        "task": median(span.values()),
        "encode": median(enc.values()),
        "path": median(span[i] - enc[i] for i in span if i in enc),
        "gap": median(gaps),
        "on_nodes": sum(1 for h in last.values() if h.get("host") in NODES),
        "redone": sum(1 for t in tasks if t["attempts"] != 1 or t.get("interruptions")),
        "own_cpu": own / hz,
        "conv_cpu": ecpu,
        "other_cpu": max(busy / hz - own / hz - ecpu, 0.0),
    }
    with open(jsonl, "a") as f:
        f.write(json.dumps(r) + "\n")
    print(f"  round {rnd} {LABEL[cfg]:17s} wall {wall:6.2f} s  {r['tpm']:5.1f} tasks/min  "
          f"started -> finished {r['task']:.3f} s = encode {fmt(r['encode'], 1, '.3f')} s + "
          f"{ms(r['path'])} ms")
    print(f"  {'':25s} turnaround {ms(r['gap'])} ms; on nodes {r['on_nodes']}/{r['n']}; redone "
          f"{r['redone']}; CPU s: conversions {ecpu:.2f}, taskmill+nats {r['own_cpu']:.2f}, "
          f"elsewhere {r['other_cpu']:.2f}")


def fmt(x, scale=1, spec=".0f"):
    return "n/a" if x is None else format(x * scale, spec)


def ms(x):
    return fmt(x, 1000)


def summary(jsonl, n, preset, cores):
    rows = [json.loads(line) for line in open(jsonl)]
    by = {(r["cfg"], r["round"]): r for r in rows}
    rounds = sorted({r["round"] for r in rows})
    paired = [k for k in rounds if all((c, k) in by for c in "abc")]
    # Each way's best round (the shortest wall): other programs on the machine only ever slow a
    # round down, so the least disturbed one is the closest to what taskmill costs.
    m = {c: min((by[(c, k)] for k in rounds if (c, k) in by), key=lambda r: r["wall"])
         for c in "abc"}
    a, b, c = m["a"], m["b"], m["c"]

    def diff(key):
        return None if a[key] is None or b[key] is None else (b[key] - a[key]) * 1000

    tp_c, tp_b = a["wall"] / c["wall"], a["wall"] / b["wall"]
    spread = " ".join(f"{by[('a', k)]['wall'] / by[('c', k)]['wall']:.2f}" for k in paired)
    ovh_wall = (b["wall"] - a["wall"]) / n * 1000
    ovh_cpu = (b["own_cpu"] - a["own_cpu"]) / n * 1000
    redone = {x: sum(by[(x, k)]["redone"] for k in rounds if (x, k) in by) for x in "abc"}
    on_c = [by[("c", k)]["on_nodes"] for k in rounds if ("c", k) in by]

    print(f"  best of {len(rounds)} round(s) each way (the shortest wall: the least disturbed):")
    for x in "abc":
        r = m[x]
        print(f"  {LABEL[x]:17s} wall {r['wall']:6.2f} s  {r['tpm']:5.1f} tasks/min  started -> "
              f"finished {r['task']:.3f} s (encode {fmt(r['encode'], 1, '.3f')} s + "
              f"{ms(r['path'])} ms)  slot turnaround {ms(r['gap'])} ms  (round {r['round']})")
    print(f"  (every task done in every round; each result downloaded once: HEVC by ffprobe, "
          f"SHA-256 as the task says; retried or redelivered: a {redone['a']}, b {redone['b']}, "
          f"c {redone['c']})")
    print(f"  ratio throughput (box + 2 nodes / box alone): {tp_c:.2f} (round by round: {spread}; "
          f"below 1 expected: on one machine the nodes share the box's {cores} cores)")
    print(f"  ratio throughput (2 nodes only / box alone):  {tp_b:.2f}")
    print(f"  cluster overhead per task, ((b) - (a)) wall / {n}: {ovh_wall:.0f} ms "
          f"(2 slots run at once: per slot, twice this)")
    print(f"  cluster overhead per task, started -> finished median (b) - (a): {fmt(diff('task'))} ms")
    print(f"    of which outside the encode (publish, start, download, upload, finish): "
          f"{fmt(diff('path'))} ms; the rest is the encodes' own difference")
    print(f"  slot turnaround, finished -> next started median (b) - (a): {fmt(diff('gap'))} ms "
          f"(a node's slot is claimed again once the node reports it idle)")
    print(f"  CPU of taskmill and nats-server per task, (b) - (a): {ovh_cpu:.0f} ms "
          f"(the conversions left out)")
    print(f"  CPU used elsewhere on the machine (noise), a / b / c: {a['other_cpu']:.2f} / "
          f"{b['other_cpu']:.2f} / {c['other_cpu']:.2f} s (conversions: {a['conv_cpu']:.2f} / "
          f"{b['conv_cpu']:.2f} / {c['conv_cpu']:.2f} s)")

    def row(fig, tm, ref="-", ratio="-"):
        print(f"| {fig} | {tm} | {ref} | {ratio} |")

    what = f"{n} x 360p {preset}, best of {len(rounds)}"
    row(f"P8 box + 2 nodes on one {cores}-core machine, throughput / box alone ({what})",
        f"{c['tpm']:.1f}/min", f"{a['tpm']:.1f}/min", f"{tp_c:.2f}")
    row("P8 2 nodes only (the same 2 encoders through the cluster), throughput / box alone",
        f"{b['tpm']:.1f}/min", f"{a['tpm']:.1f}/min", f"{tp_b:.2f}")
    row(f"P8 cluster overhead per task: ((b) - (a)) wall / {n}", f"{ovh_wall:.0f} ms")
    row("P8 cluster overhead per task: started -> finished median, (b) - (a)",
        f"{fmt(diff('task'))} ms (b: {b['task']:.3f} s)", f"(a): {a['task']:.3f} s")
    row("P8 started -> finished outside the encode (publish, start, download, upload, finish)",
        f"{fmt(diff('path'))} ms (b: {ms(b['path'])} ms)", f"(a): {ms(a['path'])} ms")
    row("P8 slot turnaround, finished -> next started, median (b) / (a)",
        f"{ms(b['gap'])} ms", f"{ms(a['gap'])} ms")
    row("P8 CPU of taskmill and nats-server per task (conversions left out), (b) / (a)",
        f"{fmt(b['own_cpu'] / n, 1000)} ms", f"{fmt(a['own_cpu'] / n, 1000)} ms",
        f"{b['own_cpu'] / a['own_cpu']:.2f}" if a["own_cpu"] else "n/a")
    row("P8 tasks the nodes ran in box + 2 nodes (per round); retried or redelivered (a/b/c)",
        f"{' '.join(map(str, on_c))} of {n}; {redone['a']}/{redone['b']}/{redone['c']}")
    row("P8 CPU used elsewhere on the machine during the best (a) / (b) / (c) (noise)",
        f"{a['other_cpu']:.2f} / {b['other_cpu']:.2f} / {c['other_cpu']:.2f} s")


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[:1] == ["batch"] and len(a) == 9:
        batch(a[1], a[2], int(a[3]), a[4], float(a[5]), int(a[6]), int(a[7]), int(a[8]))
    elif a[:1] == ["summary"] and len(a) == 5:
        summary(a[1], int(a[2]), a[3], a[4])
    else:
        sys.exit(__doc__)
