#!/usr/bin/env python3
"""An Atlas Cloud stand-in written apart from tests/mockapi (Python's standard library
only, no shared code), to check seedbatch's money rules against a second reading of the
API: upload, submit, poll, outputs. Each misbehaviour is one flag.

    atlas_server.py PORT_FILE KEY [--noid] [--delay S] [--drop-every N] [--out-404-once]
                    [--out-cut-once] [--echo-auth] [--processing S]

GET /stats answers {"submits", "predictions", "downloads", "polls"}.
"""
import json
import os
import socket
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = sys.argv[3:]
KEY = sys.argv[2]
FLAG = lambda name: name in ARGS
VALUE = lambda name, d: float(ARGS[ARGS.index(name) + 1]) if name in ARGS else d
LOCK = threading.Lock()
STATE = {"submits": 0, "predictions": 0, "downloads": 0, "polls": 0}
PREDS = {}      # id -> creation time
SEEN_OUT = set()


def png(seed):
    """A small valid PNG, 32x32 grey, its shade from the seed."""
    raw = b"".join(b"\x00" + bytes([seed % 256]) * 32 for _ in range(32))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def authed(self):
        got = self.headers.get("Authorization", "")
        if got == "Bearer " + KEY:
            return True
        msg = "unauthorized" + (": got Authorization: " + got if FLAG("--echo-auth") else "")
        self.reply(401, {"code": 401, "msg": msg, "data": None})
        return False

    def body(self):
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n) if n else b""

    def base(self):
        return "http://" + self.headers.get("Host", "127.0.0.1")

    def do_POST(self):
        data = self.body()
        if not self.authed():
            return
        if self.path == "/api/v1/model/uploadMedia":
            return self.reply(200, {"code": 200, "data": {"download_url": self.base() + "/f/%08x" % zlib.crc32(data)}})
        if self.path != "/api/v1/model/generateImage":
            return self.reply(404, {"code": 404, "msg": "not found"})
        with LOCK:
            STATE["submits"] += 1
            STATE["predictions"] += 1
            pid = "p%06d" % STATE["predictions"]
            PREDS[pid] = time.monotonic()
            n = STATE["submits"]
        time.sleep(VALUE("--delay", 0))
        every = int(VALUE("--drop-every", 0))
        if every and n % every == 0:
            self.close_connection = True  # taken, and billed, with no answer
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if FLAG("--noid"):
            return self.reply(200, {"code": 200, "data": {"status": "starting"}})
        self.reply(200, {"code": 200, "data": {"id": pid, "status": "starting"}})

    def do_GET(self):
        if self.path == "/stats":
            with LOCK:
                return self.reply(200, dict(STATE))
        if self.path.startswith("/o/"):
            return self.output(self.path[3:])
        if not self.authed():
            return
        if self.path.startswith("/api/v1/model/prediction/"):
            pid = self.path.rsplit("/", 1)[1]
            with LOCK:
                STATE["polls"] += 1
                born = PREDS.get(pid)
            if born is None:
                return self.reply(404, {"code": 404, "msg": "prediction not found"})
            if time.monotonic() - born < VALUE("--processing", 1.0):
                return self.reply(200, {"code": 200, "data": {"id": pid, "status": "processing", "outputs": []}})
            return self.reply(200, {"code": 200, "data": {"id": pid, "status": "completed",
                                                          "outputs": [self.base() + "/o/" + pid + ".png"]}})
        self.reply(404, {"code": 404, "msg": "not found"})

    def output(self, name):
        with LOCK:
            STATE["downloads"] += 1
            first = name not in SEEN_OUT
            SEEN_OUT.add(name)
        data = png(int(name[1:7]) if name[1:7].isdigit() else 7)
        if first and FLAG("--out-404-once"):
            return self.reply(404, {"error": "NoSuchKey"})
        if first and FLAG("--out-cut-once"):
            # Half the file, no length given, then a clean close: what an HTTP/1.0 server cut short sends.
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write("%d\n" % server.server_address[1])
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
server.serve_forever()
