#!/usr/bin/env python3
"""Soak test of voipchat: rooms whose members keep joining and leaving while audio flows.

Not part of CI (it runs for minutes); docs/soak.md says how to run it and what it checks.

It starts its own `voipchat serve` on a fresh data dir (127.0.0.1, ports chosen by the
kernel), creates an app, and for --minutes keeps --rooms rooms alive. Each room has one
anchor member that stays the whole time (so the room is never destroyed and re-created) and
churn members: every second each room gets one new member (a `voipchat-client` process that
plays a tone in a loop and leaves with `exit` after a random 1 to 2 x --members seconds), so
about --members members are in each room and one joins and one leaves per room per second.

Every --sample-secs it samples the server: RSS, open file descriptors, threads, the rooms and
members the backend API lists, the quota count, and checks consistency: every room has its
anchor, no room is above the cap, no member is listed whose client exited more than
--ghost-grace-secs ago (a ghost), and the quota counts exactly --rooms rooms. At the end all
members leave, and the server must list no room and no member, and be back to the file
descriptors it had before the first join.

"Flat" means: the last third of the samples' RSS is within --rss-growth-pct of the middle
third's (after warm-up), and file descriptors in the last third are no higher than the
most seen in the middle third plus what the members alive then explain.

Exit status 0 when every check held, 1 when one failed (each failure is printed), 2 on an
error (a binary missing, the server not starting).
"""

import argparse
import base64
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rooms", type=int, default=20)
    p.add_argument("--members", type=int, default=4,
                   help="churn members per room on average (besides the anchor)")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--sample-secs", type=float, default=10.0)
    p.add_argument("--bin-dir", default=None,
                   help="directory with voipchat and voipchat-client (default: build "
                        "them with cargo build --release into target/release)")
    p.add_argument("--ghost-grace-secs", type=float, default=3.0)
    p.add_argument("--rss-growth-pct", type=float, default=10.0)
    p.add_argument("--json", default=None, help="write every sample to this file")
    a = p.parse_args()
    if not (1 <= a.rooms <= 200 and 1 <= a.members <= 9 and 0 < a.minutes <= 120):
        p.error("--rooms 1..200, --members 1..9, --minutes up to 120")
    return a


class Server:
    """A voipchat server on a temporary data dir, with one VoIP-enabled app."""

    def __init__(self, binary, data_dir):
        self.binary = binary
        self.data_dir = data_dir
        created = self.cli("app", "create", "--name", "soak")
        app = json.loads(created)
        self.app_id, self.app_secret = app["appId"], app["appSecret"]
        self.cli("app", "enable-voip", self.app_id)
        self.proc = subprocess.Popen(
            [binary, "serve", "--data-dir", data_dir, "--http-addr", "127.0.0.1:0",
             "--media-addr", "127.0.0.1:0", "--no-demo"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "RUST_LOG": "warn,voipchat_server=info"}, text=True)
        self.http = None
        self.log_tail = []
        found = threading.Event()

        def read_log():
            for line in self.proc.stderr:
                if self.http is None and "voipchat serving" in line:
                    for word in line.split():
                        if word.startswith("http="):
                            self.http = word[len("http="):].strip('"')
                            found.set()
                self.log_tail = (self.log_tail + [line.rstrip()])[-20:]

        threading.Thread(target=read_log, daemon=True).start()
        if not found.wait(20):
            self.stop()
            raise RuntimeError("the server did not log its address within 20 s:\n"
                               + "\n".join(self.log_tail))
        self.auth = "Basic " + base64.b64encode(
            f"{self.app_id}:{self.app_secret}".encode()).decode()

    def cli(self, *args):
        out = subprocess.run([self.binary, args[0], "--data-dir", self.data_dir, *args[1:]],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"voipchat {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout.strip()

    def api(self, method, path, body=None):
        req = urllib.request.Request(
            f"http://{self.http}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"authorization": self.auth, "content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def rooms(self):
        """Every open room of the app: {groupId: [openId, ...]}."""
        rooms, after = {}, None
        for _ in range(100):  # at most 100 pages of 100
            q = "/api/v1/rooms?limit=100" + (f"&after={after}" if after else "")
            page = self.api("GET", q)
            for r in page["rooms"]:
                rooms[r["groupId"]] = r["openIdList"]
            after = page.get("nextAfter")
            if not after:
                break
        return rooms

    def proc_figures(self):
        pid = self.proc.pid
        status = open(f"/proc/{pid}/status").read()
        field = lambda k: int(next(l.split()[1] for l in status.splitlines() if l.startswith(k)))
        return {"rss_kib": field("VmRSS:"), "threads": field("Threads:"),
                "fds": len(os.listdir(f"/proc/{pid}/fd"))}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_tone(path):
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=3", "-ac", "1", "-ar", "48000",
                    "-c:a", "libopus", "-b:a", "24k", path], check=True, timeout=60)


def main():
    a = parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bin_dir = a.bin_dir
    if bin_dir is None:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(repo, "target"))
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "voipchat",
                        "--bin", "voipchat-client"], cwd=repo, check=True)
        bin_dir = os.path.join(target, "release")
    server_bin = os.path.join(bin_dir, "voipchat")
    client_bin = os.path.join(bin_dir, "voipchat-client")
    for b in (server_bin, client_bin):
        if not os.access(b, os.X_OK):
            print(f"soak: {b} is not an executable", file=sys.stderr)
            return 2

    work = tempfile.mkdtemp(prefix="voipchat-soak-")
    tone = os.path.join(work, "tone.opus")
    make_tone(tone)
    try:
        server = Server(server_bin, os.path.join(work, "data"))
    except Exception as e:  # noqa: BLE001 — any start failure is reported the same way
        print(f"soak: {e}", file=sys.stderr)
        return 2

    failures = []
    samples = []
    clients = {}       # Popen -> (room, openId)
    exited = {}        # openId -> monotonic time its client exited
    exit_codes = {}    # exit status -> count
    joins = 0
    stamp = int(time.time())
    groups = [f"soak-{stamp}-{i}" for i in range(a.rooms)]
    pool = {g: [f"{g}-m{j}" for j in range(3 * a.members + 3)] for g in groups}
    anchors = {g: f"{g}-anchor" for g in groups}
    keys = {}

    def key(open_id):
        if open_id not in keys:
            keys[open_id] = server.api("POST", "/api/v1/session-key", {"openId": open_id})["sessionKey"]
        return keys[open_id]

    def start(group, open_id, duration):
        nonlocal joins
        args = [client_bin, "join", "--server", f"http://{server.http}", "--app-id",
                server.app_id, "--open-id", open_id, "--group-id", group,
                "--session-key", key(open_id), "--send", tone, "--loop"]
        if duration is not None:
            args += ["--duration", f"{duration:.2f}"]
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        clients[p] = (group, open_id)
        exited.pop(open_id, None)
        joins += 1

    def reap():
        for p in list(clients):
            code = p.poll()
            if code is not None:
                group, open_id = clients.pop(p)
                exited[open_id] = time.monotonic()
                exit_codes[code] = exit_codes.get(code, 0) + 1
                if open_id == anchors[group] and not stopping:
                    failures.append(f"the anchor of {group} exited with status {code}")

    def sample(t0, phase):
        figures = server.proc_figures()
        rooms = server.rooms()
        quota = server.api("GET", "/api/v1/quota")["roomsCreated"]
        now = time.monotonic()
        alive = {oid for (_, oid) in clients.values()}
        members = sum(len(m) for m in rooms.values())
        ghosts = [oid for m in rooms.values() for oid in m
                  if oid not in alive and now - exited.get(oid, now) > a.ghost_grace_secs]
        s = {"t": round(now - t0, 1), "phase": phase, **figures, "rooms": len(rooms),
             "members": members, "clients": len(clients), "quota": quota,
             "ghosts": len(ghosts), "joins": joins}
        samples.append(s)
        print(f"{s['t']:7.1f} s  rss {s['rss_kib']:7d} KiB  fds {s['fds']:4d}  threads "
              f"{s['threads']:3d}  rooms {s['rooms']:3d}  members {s['members']:4d}  clients "
              f"{s['clients']:4d}  quota {s['quota']:3d}  ghosts {s['ghosts']}  joins {joins}",
              flush=True)
        if ghosts:
            failures.append(f"at {s['t']} s: ghosts {ghosts[:5]}")
        if phase == "run":
            if quota != a.rooms:
                failures.append(f"at {s['t']} s: the quota counts {quota} rooms, not {a.rooms}")
            for g in groups:
                if g not in rooms:
                    failures.append(f"at {s['t']} s: room {g} is not open")
                elif anchors[g] not in rooms[g]:
                    failures.append(f"at {s['t']} s: the anchor is not in {g}")
            for g, m in rooms.items():
                if len(m) > 10 or len(set(m)) != len(m):
                    failures.append(f"at {s['t']} s: room {g} lists {m}")

    stopping = False
    t0 = time.monotonic()
    try:
        base = server.proc_figures()
        print(f"soak: server {server.http}, {a.rooms} rooms, ~{a.members} churn members each, "
              f"{a.minutes} min; before any join: rss {base['rss_kib']} KiB, fds {base['fds']}",
              flush=True)
        for g in groups:
            start(g, anchors[g], None)
        end = t0 + a.minutes * 60
        next_sample = t0 + a.sample_secs
        tick = t0
        while time.monotonic() < end:
            tick += 1.0
            for g in groups:
                busy = {oid for (grp, oid) in clients.values() if grp == g}
                free = [o for o in pool[g] if o not in busy]
                if free and len(busy) < 10:
                    start(g, random.choice(free), random.uniform(1.0, 2.0 * a.members))
            reap()
            if time.monotonic() >= next_sample:
                sample(t0, "run")
                next_sample += a.sample_secs
            time.sleep(max(0.0, tick - time.monotonic()))
        # Everyone leaves: churn members end by their --duration, anchors by SIGTERM (exit).
        stopping = True
        for p, (g, oid) in list(clients.items()):
            if oid == anchors[g]:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 2.0 * a.members + 15
        while clients and time.monotonic() < deadline:
            reap()
            time.sleep(0.2)
        for p in list(clients):
            failures.append(f"client {clients[p][1]} did not end; killed")
            p.kill()
            p.wait()
        reap()
        time.sleep(a.ghost_grace_secs + 1)
        sample(t0, "after")
    finally:
        stopping = True
        for p in list(clients):
            p.kill()
            p.wait()
        server.stop()

    last = samples[-1]
    if last["rooms"] or last["members"]:
        failures.append(f"after everyone left the server lists {last['rooms']} rooms and "
                        f"{last['members']} members")
    if last["fds"] > base["fds"] + 2:
        failures.append(f"after everyone left the server has {last['fds']} file descriptors, "
                        f"{base['fds']} before the first join")
    run = [s for s in samples if s["phase"] == "run"]
    if len(run) >= 6:
        third = len(run) // 3
        middle, final = run[third:2 * third], run[2 * third:]
        rss_mid = statistics.mean(s["rss_kib"] for s in middle)
        rss_end = statistics.mean(s["rss_kib"] for s in final)
        growth = 100.0 * (rss_end - rss_mid) / rss_mid
        fd_per_client = [(s["fds"] - base["fds"]) / max(1, s["clients"]) for s in middle]
        print(f"soak: RSS middle third {rss_mid:.0f} KiB, last third {rss_end:.0f} KiB "
              f"({growth:+.1f} %); fds per live client, middle third "
              f"{min(fd_per_client):.2f}..{max(fd_per_client):.2f}")
        if growth > a.rss_growth_pct:
            failures.append(f"RSS grew {growth:.1f} % from the middle to the last third")
        limit = max(fd_per_client)
        for s in final:
            if s["fds"] - base["fds"] > limit * max(1, s["clients"]) + 4:
                failures.append(f"at {s['t']} s: {s['fds']} fds for {s['clients']} clients")
    else:
        print("soak: fewer than 6 samples: no flatness check (run longer)")
    print(f"soak: {joins} joins; client exit statuses {dict(sorted(exit_codes.items()))} "
          "(0 = left with exit, 1 = error, 2 = join refused, 3 = ended by the server)")
    if any(code != 0 for code in exit_codes):
        failures.append(f"clients ended with statuses other than 0: {exit_codes}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "before": base, "samples": samples,
                       "exit_codes": exit_codes, "failures": failures}, f, indent=1)
    subprocess.run(["rm", "-rf", work])
    for f in failures[:50]:
        print(f"FAIL: {f}")
    print("soak: " + ("ok" if not failures else f"{len(failures)} failures"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
