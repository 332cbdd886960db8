#!/usr/bin/env python3
"""hostile_server.py - a taskmill server that lies, for testing the client (stdlib only).

Usage: python3 hostile_server.py PORTFILE RESULT_NAME RESULT_FILE

Takes any POST /v1/tasks (201 with a task id), says the task is done with a result named
RESULT_NAME whose bytes are RESULT_FILE (with the true size and sha256, so only the name lies),
serves those bytes, and accepts the DELETE. A real server never names a result with another
extension than its input's result: this one does, to try to make the client overwrite a sibling
file. Writes its port to PORTFILE; exits with the process that started it.
"""

import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TASK = "3f1c2d4e-5b6a-4c7d-8e9f-0a1b2c3d4e5f"


def main():
    portfile, name, path = sys.argv[1:4]
    data = open(path, "rb").read()
    task = {"id": TASK, "task_type": "convert_video_to_libx265", "state": "done",
            "result": {"file_name": name, "size": len(data),
                       "sha256": hashlib.sha256(data).hexdigest()},
            "progress": {"percent": 100}, "error": None}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def reply(self, status, body, ctype="application/json"):
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            while n > 0:
                n -= len(self.rfile.read(min(n, 65536)))
            self.reply(201, task)

        def do_GET(self):
            if self.path.endswith("/result"):
                self.reply(200, data, "application/octet-stream")
            else:
                self.reply(200, task)

        def do_DELETE(self):
            self.send_response(204)
            self.end_headers()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(portfile + ".tmp", portfile)
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
