#!/usr/bin/env python3
"""receiver.py - a tiny HTTP callback receiver for the integration tests (stdlib only).

Usage: python3 receiver.py PORTFILE LOGFILE FAILS

Listens on 127.0.0.1 on a free port and writes that port into PORTFILE (atomically, so a
reader never sees half a number). Every request (GET, POST, PUT, PATCH, DELETE) is appended to
LOGFILE as one JSON line {"method", "path", "headers", "body", "status", "t"}: body is the parsed
JSON body (or the raw text when it is not JSON), status what the receiver answered, t the time
it arrived. The first FAILS requests are answered 500, the rest 200; a path that starts with
/status/NNN is always answered NNN, and /sleep/S waits S seconds first. The line is written
before the answer is sent. The receiver exits on SIGTERM/SIGINT, and on its own when the process
that started it is gone.
"""

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: receiver.py PORTFILE LOGFILE FAILS")
    portfile, logfile, fails = sys.argv[1], sys.argv[2], int(sys.argv[3])
    lock = threading.Lock()
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.do_POST()

        def do_PUT(self):
            self.do_POST()

        def do_PATCH(self):
            self.do_POST()

        def do_DELETE(self):
            self.do_POST()

        def do_POST(self):
            parts = self.path.split("/")
            if len(parts) > 2 and parts[1] == "sleep":
                time.sleep(float(parts[2]))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            with lock:
                count[0] += 1
                status = 500 if count[0] <= fails else 200
                if len(parts) > 2 and parts[1] == "status":
                    status = int(parts[2])
                line = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k: v for k, v in self.headers.items()},
                    "body": body,
                    "raw": raw.decode("utf-8", "replace"),
                    "status": status,
                    "t": time.time(),
                }
                with open(logfile, "a", encoding="utf-8") as f:
                    f.write(json.dumps(line) + "\n")
                    f.flush()
            reply = b'{"ok":true}\n' if status == 200 else b'{"ok":false}\n'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, fmt, *args):  # quiet: the log file is the record
            pass

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
