#!/usr/bin/env python3
"""receiver.py - a tiny HTTP callback receiver for the integration tests (stdlib only).

Usage: python3 receiver.py PORTFILE LOGFILE FAILS [any | redirect=URL | hang]

Listens on 127.0.0.1 on a free port and writes that port into PORTFILE (atomically, so a
reader never sees half a number). Every POST is appended to LOGFILE as one JSON line
{"path", "headers", "body", "status", "t"}: body is the parsed JSON body (or the raw text when
it is not JSON), status what the receiver answered, t the time it arrived. The first FAILS
requests are answered 500, the rest 200; a path that starts with /status/NNN is always answered
NNN, and one that starts with /sleep/S waits S seconds first. The line is written before the
answer is sent. The receiver exits on SIGTERM/SIGINT, and on its own when the process that
started it is gone.

With a fourth argument:
  any           as without it, but requests of every method are logged and answered (the line
                has "method"), not only POSTs: a GET, as after a followed redirect, shows too;
  redirect=URL  every POST is answered 302 Found with "Location: URL" (status 302 in the line;
                FAILS is ignored);
  hang          every POST is read and never answered: the connection is held open until the
                client closes it, and only then is the line written, with status 0 and
                "held", the seconds from the request's arrival (t) to the client's hang-up
                (FAILS is ignored).
"""

import json
import os
import select
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: receiver.py PORTFILE LOGFILE FAILS [any | redirect=URL | hang]")
    portfile, logfile, fails = sys.argv[1], sys.argv[2], int(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) == 5 else ""
    if mode not in ("", "any", "hang") and not mode.startswith("redirect="):
        sys.exit("receiver.py: the mode is any, redirect=URL or hang")
    lock = threading.Lock()
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            parts = self.path.split("?")[0].split("/")
            if len(parts) > 2 and parts[1] == "sleep":
                time.sleep(float(parts[2]))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            line = {
                "path": self.path,
                "headers": {k: v for k, v in self.headers.items()},
                "body": body,
                "raw": raw.decode("utf-8", "replace"),
                "t": time.time(),
            }
            if mode == "any":
                line["method"] = self.command
            if mode == "hang":
                self.hold()
                line["status"] = 0
                line["held"] = time.time() - line["t"]
                with lock:
                    self.write_line(line)
                self.close_connection = True
                return
            with lock:
                count[0] += 1
                if mode.startswith("redirect="):
                    status = 302
                else:
                    status = 500 if count[0] <= fails else 200
                if len(parts) > 2 and parts[1] == "status":
                    status = int(parts[2])
                line["status"] = status
                self.write_line(line)
            reply = b'{"ok":true}\n' if status == 200 else b'{"ok":false}\n'
            self.send_response(status)
            if mode.startswith("redirect="):
                self.send_header("Location", mode[len("redirect="):])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply)

        def hold(self):
            """Waits, answering nothing, until the client hangs up (at most 10 minutes)."""
            deadline = time.time() + 600
            while time.time() < deadline:
                ready, _, _ = select.select([self.connection], [], [], 0.2)
                if ready:
                    try:
                        if not self.connection.recv(4096):
                            return
                    except OSError:
                        return

        def write_line(self, line):  # under the lock
            with open(logfile, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
                f.flush()

        def log_message(self, fmt, *args):  # quiet: the log file is the record
            pass

    if mode == "any":
        for method in ("GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"):
            setattr(Handler, "do_" + method, Handler.do_POST)
    if mode == "hang":  # a held connection must not keep the next one waiting (daemon threads)
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    else:
        server = HTTPServer(("127.0.0.1", 0), Handler)
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % server.server_address[1])
    os.rename(tmp, portfile)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    parent = os.getppid()

    def watch_parent():  # a test that dies early never leaves the receiver behind
        while os.getppid() == parent:
            time.sleep(0.5)
        stop()

    threading.Thread(target=watch_parent, daemon=True).start()
    server.serve_forever(poll_interval=0.2)
    server.server_close()


if __name__ == "__main__":
    main()
