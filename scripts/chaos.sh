#!/usr/bin/env bash
# A bounded chaos run (docs/reliability.md): its own Postgres cluster and Redis
# server on free ports (never the machine's shared ones), three flashguard
# instances, the `mixed` load from the load tester; meanwhile Redis is killed and
# started again, Postgres is stopped and started, and one instance is killed -9
# and started again. Then, after one lease and one reconciliation period, the
# audit. Prints the figures that docs/reliability.md records.
#
#   scripts/chaos.sh                 # uses target/debug (cargo build first)
#   PROFILE=release scripts/chaos.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-debug}
BIN="target/$PROFILE"
DURATION=${DURATION:-45}
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
log "Redis: a server of our own on port $REDIS_PORT (append-only)"
redis_start

export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/flashguard"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
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
for i in 0 1 2; do instance_start $i; done
log "three instances on ports ${PORTS[*]}: ready after $(wait_all_ready) s"

TARGETS=$(printf 'http://127.0.0.1:%s,' "${PORTS[@]}"); TARGETS=${TARGETS%,}
log "load: mixed scenario for $DURATION s against all three"
"$BIN/loadtest" --target "$TARGETS" --admin-token "$ADMIN_TOKEN" --reset --scenario mixed \
  --users "${USERS:-3000}" --stock 1500 --concurrency 32 --duration "$DURATION" --client-timeout-ms 3000 \
  --no-audit --json >"$WORK/load.json" 2>"$WORK/load.err" &
LOAD=$!

sleep 8; log "fault 1: kill -9 Redis"; kill -9 "$REDIS_PID"
sleep 3; log "Redis restarted"; redis_start; REDIS_BACK=$(now)
log "  every instance ready again after $(wait_all_ready) s"

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

python3 - "$WORK/load.json" "$AUDIT" <<'PY'
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
server_errors = sum(c for r, c in load["replies"].items() if r.startswith("5") and "503" not in r)
print(f"500s              {server_errors}")
sys.exit(0 if audit["ok"] and server_errors == 0 else 1)
PY
