#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: baselines (HTTP, database, cache) and flashguard,
# measured side by side in one run on this machine, every run bounded.
#   scripts/bench.sh            (needs Postgres on 127.0.0.1:5432 and Redis on :6379)
# Results: target/bench/*.json and target/bench/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_SERVER="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
DB=fgbench
OUT=target/bench
FG_PORT=8097
HELLO_PORT=8096
ADMIN=bench-admin
REQUESTS="${BENCH_REQUESTS:-60000}"
USERS="${BENCH_USERS:-10000}"
STOCK="${BENCH_STOCK:-1000}"
CONCURRENCY="${BENCH_CONCURRENCY:-64}"
mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || true

echo "== build (release)"
cargo build --release --bins --example hello

echo "== fresh database $DB and Redis prefix fgbench:"
psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
redis-cli --scan --pattern 'fgbench:*' | xargs -r -n 500 redis-cli del >/dev/null

cleanup() { kill "${FG_PID:-}" "${HELLO_PID:-}" 2>/dev/null || true; }
trap cleanup EXIT
DATABASE_URL="$PG_SERVER/$DB" REDIS_URL=redis://127.0.0.1:6379 KV_PREFIX=fgbench: \
  ADMIN_TOKEN=$ADMIN BIND_ADDR=127.0.0.1:$FG_PORT RUST_LOG=warn \
  ./target/release/flashguard >"$OUT/server.log" 2>&1 &
FG_PID=$!
./target/release/examples/hello 127.0.0.1:$HELLO_PORT >/dev/null 2>&1 &
HELLO_PID=$!
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$FG_PORT/readyz" >/dev/null && break; sleep 0.2; done

LT=(./target/release/loadtest --json --admin-token $ADMIN --duration 120)
FG="--target http://127.0.0.1:$FG_PORT"

echo "== HTTP baseline: hello-world handler"
"${LT[@]}" --target "http://127.0.0.1:$HELLO_PORT" --no-audit --scenario ping --path / --requests "$REQUESTS" --concurrency "$CONCURRENCY" >"$OUT/hello.json"
echo "== flashguard: replayed request"
"${LT[@]}" $FG --scenario replay --reset --requests "$REQUESTS" --concurrency "$CONCURRENCY" >"$OUT/replay.json"
echo "== flashguard: orders on spread products"
"${LT[@]}" $FG --scenario spread --reset --users 500 --requests $((REQUESTS / 4)) --concurrency "$CONCURRENCY" >"$OUT/spread.json"
echo "== flashguard: flash sale ($USERS users, $STOCK units), all defenses on"
"${LT[@]}" $FG --scenario flash-sale --reset --users "$USERS" --stock "$STOCK" --concurrency "$CONCURRENCY" >"$OUT/flash.json"
echo "== flashguard: sold-out answers once the sale is over (the same product, new buyers)"
SOLD=$(python3 -c "import json;print(json.load(open('$OUT/flash.json'))['outcome']['product_id'])")
"${LT[@]}" $FG --scenario flash-sale --product "$SOLD" --users "$USERS" --concurrency "$CONCURRENCY" >"$OUT/soldout.json"
echo "== flashguard: the same flash sale with stock_gate off (version lock alone)"
curl -sf -X PUT "http://127.0.0.1:$FG_PORT/api/admin/defenses" -H "Authorization: Bearer $ADMIN" \
  -H 'Content-Type: application/json' -d '{"stock_gate":false}' >/dev/null
"${LT[@]}" $FG --scenario flash-sale --reset --users "$USERS" --stock "$STOCK" --concurrency "$CONCURRENCY" >"$OUT/flash-nogate.json"
curl -sf -X PUT "http://127.0.0.1:$FG_PORT/api/admin/defenses" -H "Authorization: Bearer $ADMIN" \
  -H 'Content-Type: application/json' -d '{"stock_gate":true}' >/dev/null
echo "== flashguard: flash sale at 1000 connections (peak RSS)"
"${LT[@]}" $FG --scenario flash-sale --reset --users "$USERS" --stock "$STOCK" --concurrency 1000 >"$OUT/flash-1000.json"
grep VmHWM "/proc/$FG_PID/status" | awk '{print $2}' >"$OUT/rss-kb.txt"

echo "== database baseline: pgbench, the order transaction (hot row, spread rows)"
psql "$PG_SERVER/$DB" -q -f scripts/pgbench/setup.sql
FIRST=$(psql "$PG_SERVER/$DB" -Atc "SELECT min(id) FROM products WHERE name LIKE 'pgbench %'")
for clients in 8 64; do
  pgbench -n -c $clients -j 2 -T 10 -D hot="$FIRST" -f scripts/pgbench/order_hot.sql "$PG_SERVER/$DB" 2>/dev/null \
    | awk '/^tps/ {print $3; exit}' >"$OUT/pgbench-hot-$clients.txt"
  pgbench -n -c $clients -j 2 -T 10 -D first="$FIRST" -f scripts/pgbench/order_spread.sql "$PG_SERVER/$DB" 2>/dev/null \
    | awk '/^tps/ {print $3; exit}' >"$OUT/pgbench-spread-$clients.txt"
done

echo "== cache baseline: redis-benchmark"
redis-benchmark -q -n 200000 -c "$CONCURRENCY" -t get,set --csv >"$OUT/redis.csv"

python3 scripts/bench_table.py "$OUT" | tee "$OUT/table.md"
