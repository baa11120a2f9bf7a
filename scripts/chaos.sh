#!/usr/bin/env bash
# A bounded chaos run (docs/reliability.md): its own Postgres cluster and Redis
# server on free ports (never the machine's shared ones), three flashguard
# instances, the `mixed` load from the load tester; meanwhile Redis is killed and
# started again, Postgres is stopped and started, and one instance is killed -9
# and started again. Then, after one lease and one reconciliation period, the
# audit. Prints the figures that docs/reliability.md records.
#
# The cluster run (CLUSTER=1): a Redis Cluster of its own (3 masters, each with
# a replica; .ci/redis-cluster), GATE_BUCKETS=3, and the three instances behind
# nginx (Debian's package; config generated, port free) - the load goes
# through nginx; the faults are a Redis master killed -9 (the one holding every
# product's bucket 0; its replica takes over), an instance killed -9, and
# Postgres stopped. Then the same flash sale through nginx and through the
# three instances directly, each with its audit.
#
#   scripts/chaos.sh                 # uses target/debug (cargo build first)
#   PROFILE=release scripts/chaos.sh
#   CLUSTER=1 PROFILE=release scripts/chaos.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-debug}
BIN="target/$PROFILE"
DURATION=${DURATION:-45}
CLUSTER=${CLUSTER:-0}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$BIN/flashguard" ] && [ -x "$BIN/loadtest" ] || cargo build $([ "$PROFILE" = release ] && echo --release) --bins

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.1f}')"; }
log() { printf '[%5.1fs] %s\n' "$(python3 -c "print($(now) - $START)")" "$*"; }

WORK=$(mktemp -d /tmp/flashguard-chaos.XXXX)
chown postgres "$WORK" 2>/dev/null || true
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  [ -n "${REDIS_PID:-}" ] && kill -9 "$REDIS_PID" 2>/dev/null || true
  [ -f "$WORK/nginx/nginx.pid" ] && kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true
  [ -d "$WORK/cluster" ] && .ci/redis-cluster stop "$WORK/cluster" || true
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PG_PORT=$(free_port); REDIS_PORT=$(free_port)
START=$(now)

log "Postgres: a cluster of our own on port $PG_PORT"
runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg" -U postgres --auth=trust >/dev/null
pg_start() {
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w \
    -o "-p $PG_PORT -k $WORK -c listen_addresses=127.0.0.1" start >/dev/null
}
pg_start
runuser -u postgres -- "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres flashguard

redis_start() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly yes \
    --appendfsync everysec --dir "$WORK" --logfile "$WORK/redis.log" &
  REDIS_PID=$!
  disown "$REDIS_PID"
  for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return; sleep 0.1; done
}
if [ "$CLUSTER" = 1 ]; then
  log "Redis Cluster: 3 masters + 3 replicas of our own"
  REDIS_CLUSTER_URLS=$(REPLICAS=1 .ci/redis-cluster start "$WORK/cluster")
  export REDIS_CLUSTER_URLS GATE_BUCKETS=3
  CLUSTER_PORTS=($(echo "$REDIS_CLUSTER_URLS" | tr ',' '\n' | sed 's/.*://'))
else
  log "Redis: a server of our own on port $REDIS_PORT (append-only)"
  redis_start
  export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
fi

export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/flashguard"
export ADMIN_TOKEN=chaos-admin PSP_SECRET=chaos-psp SESSION_SECRET=chaos-session
export IDEMPOTENCY_LEASE_SECS=5 GATE_RECONCILE_SECS=2 REWARDS_SETTLE_SECS=5 RUST_LOG=warn
PORTS=($(free_port) $(free_port) $(free_port))

instance_start() { # index
  BIND_ADDR="127.0.0.1:${PORTS[$1]}" "$BIN/flashguard" >"$WORK/app$1.log" 2>&1 &
  PIDS[$1]=$!
  disown "${PIDS[$1]}"
}
ready() { curl -fsS -m 1 "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; }
wait_all_ready() { # prints the seconds it took
  local from; from=$(now)
  for _ in $(seq 1 300); do
    local all=1
    for port in "${PORTS[@]}"; do ready "$port" || all=0; done
    [ $all = 1 ] && { elapsed "$from" "$(now)"; return; }
    sleep 0.1
  done
  echo "never"
}
# nginx in front (the cluster run): round robin; a failed connection takes an
# instance out for 2 s (open-source nginx checks passively: its active
# `health_check` is NGINX Plus's); a request that could not be sent goes to the
# next instance (nginx does not pass on a POST it has already sent).
nginx_start() {
  NGINX_PORT=$(free_port)
  mkdir -p "$WORK/nginx"
  local upstreams=""
  for port in "${PORTS[@]}"; do
    upstreams+="    server 127.0.0.1:$port max_fails=1 fail_timeout=2s;"$'\n'
  done
  cat >"$WORK/nginx/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 2048; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream flashguard {
$upstreams    keepalive 64;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://flashguard;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_next_upstream error timeout;
      proxy_connect_timeout 1s;
      proxy_read_timeout 10s;
    }
  }
}
NGINX
  nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx"
}

# The port of the live master serving `slot` (from CLUSTER NODES).
master_of_slot() {
  local asked
  for asked in "${CLUSTER_PORTS[@]}"; do redis-cli -p "$asked" ping >/dev/null 2>&1 && break; done
  redis-cli -p "$asked" cluster nodes | awk -v slot="$1" '
    $3 ~ /master/ && $3 !~ /fail/ {
      for (i = 9; i <= NF; i++) {
        n = split($i, range, "-"); if (n == 1) range[2] = range[1]
        if (slot + 0 >= range[1] + 0 && slot + 0 <= range[2] + 0) { split($2, a, "[:@]"); print a[2]; exit }
      }
    }'
}

# Seconds until another master serves the killed one's slot (bounded: 30 s).
wait_failed_over() {
  local from; from=$(now)
  for _ in $(seq 1 300); do
    local serving; serving=$(master_of_slot 2730)
    [ -n "$serving" ] && [ "$serving" != "$1" ] && { elapsed "$from" "$(now)"; return; }
    sleep 0.1
  done
  echo "never"
}

for i in 0 1 2; do instance_start $i; done
log "three instances on ports ${PORTS[*]}: ready after $(wait_all_ready) s"

DIRECT=$(printf 'http://127.0.0.1:%s,' "${PORTS[@]}"); DIRECT=${DIRECT%,}
TARGETS=$DIRECT
if [ "$CLUSTER" = 1 ]; then
  nginx_start
  TARGETS="http://127.0.0.1:$NGINX_PORT"
  log "nginx on port $NGINX_PORT, round robin over the three"
fi
log "load: mixed scenario for $DURATION s against $TARGETS"
"$BIN/loadtest" --target "$TARGETS" --admin-token "$ADMIN_TOKEN" --reset --scenario mixed \
  --users "${USERS:-3000}" --stock 1500 --concurrency 32 --duration "$DURATION" --client-timeout-ms 3000 \
  --no-audit --json >"$WORK/load.json" 2>"$WORK/load.err" &
LOAD=$!

sleep 8
if [ "$CLUSTER" = 1 ]; then
  victim=$(master_of_slot 2730)
  log "fault 1: kill -9 the Redis master on port $victim (slot 2730: every product's bucket 0)"
  kill -9 "$(cat "$WORK/cluster/redis-$victim.pid")"
  log "  its replica took over after $(wait_failed_over "$victim") s"
  log "  every instance ready after $(wait_all_ready) s"
else
  log "fault 1: kill -9 Redis"; kill -9 "$REDIS_PID"
  sleep 3; log "Redis restarted"; redis_start
  log "  every instance ready again after $(wait_all_ready) s"
fi

sleep 5; log "fault 2: Postgres stopped (immediate)"
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null
sleep 3; log "Postgres started"; pg_start
log "  every instance ready again after $(wait_all_ready) s"

sleep 5; log "fault 3: kill -9 the instance on port ${PORTS[1]}"
kill -9 "${PIDS[1]}"
sleep 2; instance_start 1; log "  restarted: ready after $(wait_all_ready) s"

wait "$LOAD" || true
log "load finished; waiting one lease and one reconciliation period"
sleep $((IDEMPOTENCY_LEASE_SECS + 2 * GATE_RECONCILE_SECS + REWARDS_SETTLE_SECS))
AUDIT=$(curl -fsS -m 10 -H "Authorization: Bearer $ADMIN_TOKEN" "http://127.0.0.1:${PORTS[0]}/api/audit")

CHAOS_OK=0
python3 - "$WORK/load.json" "$AUDIT" <<'PY' || CHAOS_OK=1
import json, sys
load = json.load(open(sys.argv[1]))
audit = json.loads(sys.argv[2])
print("\n=== chaos run")
print(f"requests          {load['requests']} ({load['transport_errors']} transport errors)")
print(f"latency ms        p50 {load['latency_ms']['p50']:.1f}  p99 {load['latency_ms']['p99']:.1f}  longest wait {load['latency_ms']['max']:.1f}")
print("answers by status")
for reply, count in sorted(load["replies"].items()):
    print(f"  {reply:<34} {count}")
print("audit             " + ("OK" if audit["ok"] else "FAILED"))
for check in audit["checks"]:
    mark = "ok " if check["ok"] else ("warn" if check.get("level") == "warning" else "BAD")
    print(f"  {mark} {check['name']:<28} {check['detail']}")
# 502 and 504 come from nginx (the cluster run): requests in flight on the
# instance killed -9, which nginx does not send again (a POST may have taken
# effect); without nginx they are transport errors. Every other 5xx but 503 is
# a server error.
gateway = sum(c for r, c in load["replies"].items() if r.split()[0] in ("502", "504"))
server_errors = sum(c for r, c in load["replies"].items()
                    if r.startswith("5") and r.split()[0] not in ("502", "503", "504"))
print(f"gateway 502/504   {gateway} (requests in flight on the killed instance)")
print(f"500s              {server_errors}")
sys.exit(0 if audit["ok"] and server_errors == 0 else 1)
PY

# The cluster run ends with the same flash sale through nginx and through the
# three instances directly: the same outcome, each audit green.
if [ "$CLUSTER" = 1 ]; then
  for way in nginx direct; do
    target=$DIRECT; [ "$way" = nginx ] && target="http://127.0.0.1:$NGINX_PORT"
    "$BIN/loadtest" --target "$target" --admin-token "$ADMIN_TOKEN" --reset --scenario flash-sale \
      --users 3000 --stock 300 --concurrency 32 --json >"$WORK/sale-$way.json" 2>"$WORK/sale-$way.err"
  done
  python3 - "$WORK/sale-nginx.json" "$WORK/sale-direct.json" <<'PY' || CHAOS_OK=1
import json, sys
runs = {way: json.load(open(path)) for way, path in zip(("nginx", "direct"), sys.argv[1:])}
print("\n=== the same flash sale (3,000 buyers, 300 units) through nginx and directly")
for way, run in runs.items():
    failed = [c["name"] for c in run["audit"]["checks"] if not c["ok"]]
    print(f"{way:<7} orders {run['outcome']['orders_created']:>4}  audit {'OK' if run['audit_ok'] else 'FAILED ' + ', '.join(failed)}"
          f"  answers {dict(sorted(run['replies'].items()))}")
same = len({run["outcome"]["orders_created"] for run in runs.values()}) == 1
sys.exit(0 if same and all(run["audit_ok"] for run in runs.values()) else 1)
PY
fi
exit "$CHAOS_OK"
