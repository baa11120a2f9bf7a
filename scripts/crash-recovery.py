#!/usr/bin/env python3
"""How long a crashed instance holds units (docs/reliability.md, "A crashed
instance costs seconds"). Two instances of the built binary on one Postgres
database of their own and one Redis (a key prefix of their own); a sale of 6
units; two orders freeze on A after taking their units (the lab fault
`orders_stall_after_gate_ms`), B sells the other four, a late buyer is told
"sold out for now"; then A is killed -9 and two buyers ask B every 50 ms until
both held units are bought. Leases (600 s) and the periodic reconciliation
(3600 s) are pushed out of the way, so only the heartbeat can free them.

  scripts/crash-recovery.py [HEARTBEAT_MS]     # default 1000; 0: heartbeats off
  BIN=target/debug/flashguard DATABASE_SERVER=postgres://… REDIS_URL=redis://… scripts/crash-recovery.py
"""
import json, os, socket, subprocess, sys, threading, time, urllib.request, uuid
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BIN", os.path.join(ROOT, "target/release/flashguard"))
SERVER = os.environ.get("DATABASE_SERVER", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
run = uuid.uuid4().hex[:8]
db = f"fg_hb_{run}"
subprocess.run(["psql", SERVER, "-qc", f"CREATE DATABASE {db}"], check=True)
prefix = f"fghb:{run}:"
env = dict(os.environ, DATABASE_URL=SERVER.rsplit("/", 1)[0] + "/" + db, REDIS_URL=REDIS,
           KV_PREFIX=prefix, ADMIN_TOKEN="hb-admin", SESSION_SECRET="hb-session-" + run, PSP_SECRET="hb-psp-" + run,
           IDEMPOTENCY_LEASE_SECS="600", GATE_RECONCILE_SECS="3600", INSTANCE_HEARTBEAT_MS=sys.argv[1] if len(sys.argv) > 1 else "1000",
           # No deadline: a frozen instance answers nothing, so none cuts its stalled orders.
           REQUEST_DEADLINE_MS="0", RUST_LOG="warn")
ports = [free(), free()]
procs = [subprocess.Popen([BIN], env=dict(env, BIND_ADDR=f"127.0.0.1:{p}"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/tmp") for p in ports]
A, B = [f"http://127.0.0.1:{p}" for p in ports]
def call(method, url, body=None, token=None, key=None, timeout=70):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token: req.add_header("Authorization", "Bearer " + token)
    if key: req.add_header("Idempotency-Key", key)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r: return r.status, dict(r.headers), json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e: return e.code, dict(e.headers), json.loads(e.read() or b"null")
def stalled(base, product, token, key):
    try:
        call("POST", base + "/api/orders", {"product_id": product, "quantity": 1}, token, key)
    except OSError:
        pass  # its instance was killed: no answer, as intended
for base in (A, B):
    for _ in range(300):
        try:
            if call("GET", base + "/readyz", timeout=1)[0] == 200: break
        except Exception: pass
        time.sleep(0.1)
try:
    product = call("POST", B + "/api/admin/reset", {"products": [{"name": "hb", "price_cents": 100, "stock": 6}]}, token="hb-admin")[2]["products"][0]["id"]
    tokens = [call("POST", B + "/api/login", {"username": f"hb{i}"})[2]["token"] for i in range(8)]
    assert call("PUT", A + "/api/admin/faults", {"rewards_crash_after_effect": 0, "orders_stall_after_gate_ms": 60000}, token="hb-admin")[0] == 200
    for i in range(2):
        threading.Thread(target=stalled, args=(A, product, tokens[i], f"k{i}"), daemon=True).start()
    counter = f"{prefix}gate:{{p{product}}}:stock"
    for _ in range(100):
        if subprocess.run(["redis-cli", "-u", REDIS, "GET", counter], capture_output=True, text=True).stdout.strip() == "4": break
        time.sleep(0.05)
    for i in range(2, 6):
        assert call("POST", B + "/api/orders", {"product_id": product, "quantity": 1}, tokens[i], f"k{i}")[0] == 201
    s, h, body = call("POST", B + "/api/orders", {"product_id": product, "quantity": 1}, tokens[6], "late")
    print("late buyer before the kill:", s, body.get("code"), "Retry-After", {k.lower(): v for k, v in h.items()}.get("retry-after"))
    procs[0].kill(); t0 = time.time()
    got = {}
    while len(got) < 2 and time.time() - t0 < 30:
        for i, key in ((6, "late"), (7, "late2")):
            if i in got: continue
            s, h, body = call("POST", B + "/api/orders", {"product_id": product, "quantity": 1}, tokens[i], key)
            if s == 201: got[i] = time.time() - t0
        time.sleep(0.05)
    print("heartbeat", env["INSTANCE_HEARTBEAT_MS"], "ms: held units bought after", sorted(round(v, 2) for v in got.values()), "s after the kill (none: still held after 30 s)")
    print("audit ok:", call("GET", B + "/api/audit", token="hb-admin")[2]["ok"])
finally:
    for p in procs: p.kill()
    time.sleep(0.5)
    subprocess.run(["psql", SERVER, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"])
