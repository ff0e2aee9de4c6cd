#!/usr/bin/env python3
"""An example game backend for voipchat: Python 3.11, standard library only.

  GET  /                       the game's page (../page/index.html, shared by the examples)
  GET  /my-backend/config      {voipchatUrl, appId}: what the page needs to load the SDK
  POST /my-backend/voip-sign   {groupId, openId} -> {nonceStr, timeStamp, signature}

The signing route makes sure the player has a session key at voipchat (POST
/api/v1/session-key, once per player) and has voipchat sign the join (POST
/api/v1/voip-sign), both with HTTP Basic appId:appSecret; the key never leaves voipchat.

Who the player is: a real backend knows it from its own login session (a cookie) and must
not believe the page. This example takes `openId` from the JSON body, or from an
`X-Open-Id` header when the body has none.

Configuration (env): VOIPCHAT_URL (default http://127.0.0.1:7880; the browsers load the SDK
from it too), APP_ID, APP_SECRET (from `voipchat app create`), PORT (default 8080; 0 picks a
free one), HOST (default 127.0.0.1).
"""

import base64
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VOIPCHAT_URL = os.environ.get("VOIPCHAT_URL", "http://127.0.0.1:7880").rstrip("/")
APP_ID = os.environ.get("APP_ID", "")
APP_SECRET = os.environ.get("APP_SECRET", "")
PORT = int(os.environ.get("PORT", "8080"))
HOST = os.environ.get("HOST", "127.0.0.1")
if not APP_ID or not APP_SECRET:
    sys.exit("set APP_ID and APP_SECRET (printed by `voipchat app create`)")
AUTH = "Basic " + base64.b64encode(f"{APP_ID}:{APP_SECRET}".encode()).decode()
PAGE = (Path(__file__).parent.parent / "page" / "index.html").read_bytes()


def voipchat(path, payload):
    """POSTs to voipchat's backend API; returns (status, body)."""
    req = urllib.request.Request(
        VOIPCHAT_URL + path,
        data=json.dumps(payload).encode(),
        headers={"authorization": AUTH, "content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.load(res)
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.load(e)
        except ValueError:
            return e.code, {"errCode": -1000, "errMsg": f"api:fail HTTP {e.code}"}


# The players that have a session key; one lock per player, so concurrent joins of a new
# player ask for one key, not two (each request rotates the key).
have_key = set()
key_locks = {}
locks_lock = threading.Lock()


def ensure_session_key(open_id):
    with locks_lock:
        lock = key_locks.setdefault(open_id, threading.Lock())
    with lock:
        if open_id in have_key:
            return
        status, body = voipchat("/api/v1/session-key", {"openId": open_id})
        if status != 200:
            raise BackendError(status, body)
        # voipchat keeps the key and signs with it; a backend that signs itself would keep
        # body["sessionKey"] (and never send it to the page).
        have_key.add(open_id)
        print(f"session key issued for {open_id}", flush=True)


def voip_sign(open_id, group_id):
    ensure_session_key(open_id)
    # No nonce or timestamp: voipchat picks a fresh nonce and its current time.
    status, body = voipchat("/api/v1/voip-sign", {"openId": open_id, "groupId": group_id})
    if status == 404:
        # voipchat has no key for the player (its data was reset): issue one again, once.
        have_key.discard(open_id)
        ensure_session_key(open_id)
        status, body = voipchat("/api/v1/voip-sign", {"openId": open_id, "groupId": group_id})
    if status != 200:
        return status, body
    return 200, {k: body[k] for k in ("nonceStr", "timeStamp", "signature")}


class BackendError(Exception):
    def __init__(self, status, body):
        super().__init__(f"voipchat answered {status}")
        self.status, self.body = status, body


class Handler(BaseHTTPRequestHandler):
    server_version = "my-game-backend"

    def send(self, status, body, content_type="application/json"):
        data = json.dumps(body).encode() if content_type == "application/json" else body
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.send_header("cache-control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self.send(200, PAGE, "text/html; charset=utf-8")
        elif path == "/favicon.ico":
            self.send_response(204)
            self.end_headers()
        elif path == "/my-backend/config":
            self.send(200, {"voipchatUrl": VOIPCHAT_URL, "appId": APP_ID})
        else:
            self.send(404, {"error": "not found"})

    def do_POST(self):
        if self.path.split("?", 1)[0] != "/my-backend/voip-sign":
            self.send(404, {"error": "not found"})
            return
        length = int(self.headers.get("content-length") or 0)
        if length > 16 * 1024:
            self.send(413, {"error": "body too large"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            self.send(400, {"error": "expected a JSON body {groupId, openId}"})
            return
        open_id = body.get("openId") or self.headers.get("x-open-id")
        group_id = body.get("groupId")
        if not isinstance(open_id, str) or not open_id or not isinstance(group_id, str) or not group_id:
            self.send(400, {"error": "groupId and the player (openId in the body, or X-Open-Id) are required"})
            return
        try:
            status, answer = voip_sign(open_id, group_id)
        except BackendError as e:
            status, answer = e.status, e.body
        except OSError as e:  # voipchat unreachable
            status, answer = 502, {"error": f"voipchat unreachable: {e}"}
        self.send(status, answer)

    def log_request(self, code="-", size="-"):
        pass  # quiet about each request; errors still reach stderr through log_error


def main():
    httpd = ThreadingHTTPServer((HOST, PORT), Handler)
    httpd.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown).start())
    host, port = httpd.server_address[:2]
    print(f"listening on http://{host}:{port}/ (voipchat at {VOIPCHAT_URL}, app {APP_ID})", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    httpd.server_close()


if __name__ == "__main__":
    main()
