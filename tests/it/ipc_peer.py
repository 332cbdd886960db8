#!/usr/bin/env python3
"""ipc_peer.py - talks raw IPC to a taskmill daemon socket, for the tests (stdlib only).

Usage: python3 ipc_peer.py SOCKET MESSAGE...

Connects to SOCKET (SOCK_SEQPACKET), sends each MESSAGE as one datagram (a JSON text, or
"@hex:..." for raw bytes), and after each prints the replies that arrive within 0.5 s, one JSON
line each ("-" when none came). Exits 1 when the connection is closed on it.
"""
import json
import socket
import sys


def main():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(sys.argv[1])
    s.settimeout(0.5)
    for m in sys.argv[2:]:
        s.send(bytes.fromhex(m[5:]) if m.startswith("@hex:") else m.encode())
        got = False
        while True:
            try:
                data = s.recv(70000)
            except socket.timeout:
                break
            if not data:
                print("closed")
                sys.exit(1)
            print(json.dumps(json.loads(data), sort_keys=True))
            got = True
        if not got:
            print("-")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
