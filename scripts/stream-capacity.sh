#!/usr/bin/env bash
# How many reward messages one Redis Stream (one key, so one node of a cluster)
# carries on this machine, measured with redis-benchmark on a redis-server of
# the script's own (free port, never the machine's shared Redis). A reward
# costs the stream one XADD (the relay), one XACK (the consumer) and a share of
# an XREADGROUP … COUNT 100 (docs/scaling.md, step 3).
#
#   scripts/stream-capacity.sh            # 200,000 requests per command
#   REQUESTS=50000 scripts/stream-capacity.sh
set -euo pipefail
requests=${REQUESTS:-200000}
clients=${CLIENTS:-16}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
  --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
trap 'kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done

cli() { redis-cli -p "$port" "$@" >/dev/null; }
rate() { # label, command…
  local label=$1; shift
  local out
  out=$(redis-benchmark -p "$port" -n "$requests" -c "$clients" -q "$@" 2>/dev/null | tr '\r' '\n' | grep -E 'requests per second' | tail -1)
  printf '%-44s %s\n' "$label" "$(echo "$out" | grep -oE '[0-9.]+ requests per second')"
}

echo "redis-server $(redis-server --version | grep -oE 'v=[0-9.]+' | cut -c3-) on 127.0.0.1:$port, $requests requests per command, $clients clients, $(nproc) cores"
cli XGROUP CREATE rewards consumers '$' MKSTREAM
rate "XADD (relay: one per message)" XADD rewards '*' message_id 0194c1de-7b1a-7f00-8000-000000000000 order_no FG20261201000001 points 100
cli XREADGROUP GROUP consumers c1 COUNT 1000000 STREAMS rewards '>'
# Every entry is now pending for c1; reading them again from id 0 returns 100
# entries per call: the work of a consumer's batch.
rate "XREADGROUP COUNT 100 (consumer: per batch)" XREADGROUP GROUP consumers c1 COUNT 100 STREAMS rewards 0
rate "XACK (consumer: one per message)" XACK rewards consumers 1-1
echo "stream length: $(redis-cli -p "$port" XLEN rewards)"
