#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: baselines (HTTP, database, cache) and flashguard,
# measured side by side in one run on this machine, every run bounded.
#   scripts/bench.sh                        Postgres on 127.0.0.1:5432, pgbench
#   BENCH_DATABASE=mysql scripts/bench.sh   MySQL/MariaDB on 127.0.0.1:3306, sysbench
# (both: Redis on :6379 and wrk; wrk and sysbench are Debian packages).
# HTTP-path ratios (replay, sold-out vs hello-world) are driven by wrk on both
# sides; order phases by the project's load tester (it checks the audit).
# Results: target/bench/*.json, target/bench/table.md, its charts in target/bench/charts/
# (throughput.svg, cpu.svg), the flash sale's report (flash-report.html) and the gate
# on/off overlay (flash-compare.html) (target/bench-mysql/ for MySQL).
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE="${BENCH_DATABASE:-postgres}"
PG_SERVER="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
MYSQL_SERVER="${BENCH_MYSQL:-mysql://root@127.0.0.1:3306}"
DB=fgbench
case "$ENGINE" in
  postgres) OUT=target/bench; DATABASE_URL="$PG_SERVER/$DB" ;;
  mysql) OUT=target/bench-mysql; DATABASE_URL="$MYSQL_SERVER/$DB" ;;
  *) echo "BENCH_DATABASE is postgres or mysql, not $ENGINE" >&2; exit 2 ;;
esac
for tool in wrk redis-benchmark $([ "$ENGINE" = mysql ] && echo sysbench mysql || echo pgbench psql); do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install wrk sysbench …)" >&2; exit 2; }
done
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

echo "== fresh $ENGINE database $DB and Redis prefix fgbench:"
if [ "$ENGINE" = mysql ]; then
  mysql -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
else
  psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
fi
redis-cli --scan --pattern 'fgbench:*' | xargs -r -n 500 redis-cli del >/dev/null

cleanup() { kill "${FG_PID:-}" "${HELLO_PID:-}" 2>/dev/null || true; }
trap cleanup EXIT
DATABASE_URL="$DATABASE_URL" REDIS_URL=redis://127.0.0.1:6379 KV_PREFIX=fgbench: \
  ADMIN_TOKEN=$ADMIN BIND_ADDR=127.0.0.1:$FG_PORT RUST_LOG=warn IDEMPOTENCY_RETENTION_SECS=600 \
  ./target/release/flashguard >"$OUT/server.log" 2>&1 &
FG_PID=$!
./target/release/examples/hello 127.0.0.1:$HELLO_PORT >/dev/null 2>&1 &
HELLO_PID=$!
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$FG_PORT/readyz" >/dev/null && break; sleep 0.2; done

LT=(./target/release/loadtest --json --admin-token $ADMIN --duration 120)
FG="--target http://127.0.0.1:$FG_PORT"
FG_URL="http://127.0.0.1:$FG_PORT"
WRK=(wrk -t2 -c"$CONCURRENCY" -d"${BENCH_WRK_SECS:-10}"s --latency)

# Server CPU per answer: utime + stime of the server process (/proc/<pid>/stat,
# in clock ticks) before and after each phase, written to $OUT/<phase>.cpu as
# "<ticks> <ticks per second>"; bench_table.py divides by the answers. The
# Redis server's, the same way, to $OUT/<phase>.redis-cpu (it shares the cores).
CLK=$(getconf CLK_TCK)
REDIS_PID=$(pgrep -o -x redis-server || true)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
measure() {
  local pid=$1 name=$2 before redis_before=0
  shift 2
  before=$(ticks "$pid")
  [ -n "$REDIS_PID" ] && redis_before=$(ticks "$REDIS_PID")
  "$@"
  echo "$(($(ticks "$pid") - before)) $CLK" >"$OUT/$name.cpu"
  [ -n "$REDIS_PID" ] && echo "$(($(ticks "$REDIS_PID") - redis_before)) $CLK" >"$OUT/$name.redis-cpu"
  true
}
admin() { curl -sf -X "$1" "$FG_URL$2" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' ${3:+-d "$3"}; }
login() { curl -sf -X POST "$FG_URL/api/login" -H 'Content-Type: application/json' -d "{\"username\":\"$1\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'; }

echo "== HTTP baseline: hello-world handler (wrk)"
measure $HELLO_PID hello "${WRK[@]}" "http://127.0.0.1:$HELLO_PORT/" >"$OUT/hello.wrk"
echo "== HTTP baseline: hello-world plus one Redis round trip (wrk)"
measure $HELLO_PID hello-redis "${WRK[@]}" -s scripts/wrk/hello_redis.lua "http://127.0.0.1:$HELLO_PORT" >"$OUT/hello-redis.wrk"
echo "== HTTP baseline: hello-world plus one Redis round trip that stores under a new key (wrk)"
measure $HELLO_PID hello-store "${WRK[@]}" -s scripts/wrk/hello_store.lua "http://127.0.0.1:$HELLO_PORT" >"$OUT/hello-store.wrk"
redis-cli --scan --pattern 'hello:store:*' | xargs -r -n 500 redis-cli del >/dev/null

echo "== flashguard: replayed request (wrk, one key)"
PRODUCT=$(admin POST /api/admin/reset '{"products":[{"name":"replay","price_cents":100,"stock":1000}]}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["products"][0]["id"])')
export FG_TOKEN FG_ADMIN=$ADMIN FG_PRODUCT=$PRODUCT FG_KEY=bench-replay
FG_TOKEN=$(login bench-replay)
curl -sf -X POST "$FG_URL/api/orders" -H "Authorization: Bearer $FG_TOKEN" -H "Idempotency-Key: $FG_KEY" \
  -H 'Content-Type: application/json' -d "{\"product_id\":$PRODUCT,\"quantity\":1}" >/dev/null
measure $FG_PID replay "${WRK[@]}" -s scripts/wrk/replay.lua "$FG_URL" >"$OUT/replay.wrk"

echo "== flashguard: orders on spread products (loadtest)"
measure $FG_PID spread "${LT[@]}" $FG --scenario spread --reset --users 500 --requests $((REQUESTS / 4)) --concurrency "$CONCURRENCY" >"$OUT/spread.json"
batches() { curl -sf "$FG_URL/metrics" -H "Authorization: Bearer $ADMIN" | grep '^flashguard_order_batch_size' >"$OUT/batches-$1.txt" || true; }
echo "== flashguard: flash sale ($USERS users, $STOCK units), all defenses on (loadtest)"
batches before-flash
measure $FG_PID flash "${LT[@]}" $FG --scenario flash-sale --reset --users "$USERS" --stock "$STOCK" --concurrency "$CONCURRENCY" \
  --label "gate on" --report "$OUT/flash-report.json" --report "$OUT/flash-report.html" >"$OUT/flash.json"

batches after-flash
echo "== flashguard: sold-out answers once the sale is over (wrk, a new key per request)"
FG_PRODUCT=$(python3 -c "import json;print(json.load(open('$OUT/flash.json'))['outcome']['product_id'])")
FG_TOKEN=$(login bench-late)
measure $FG_PID soldout "${WRK[@]}" -s scripts/wrk/soldout.lua "$FG_URL" >"$OUT/soldout.wrk"

echo "== flashguard: the same flash sale with stock_gate off (version lock alone)"
admin PUT /api/admin/defenses '{"stock_gate":false}' >/dev/null
batches before-nogate
measure $FG_PID flash-nogate "${LT[@]}" $FG --scenario flash-sale --reset --users "$USERS" --stock "$STOCK" --concurrency "$CONCURRENCY" \
  --label "gate off" --report "$OUT/flash-nogate-report.json" >"$OUT/flash-nogate.json"
batches after-nogate
admin PUT /api/admin/defenses '{"stock_gate":true}' >/dev/null
echo "== flashguard: flash sale at 1000 connections (peak RSS)"
"${LT[@]}" $FG --scenario flash-sale --reset --users "$USERS" --stock "$STOCK" --concurrency 1000 >"$OUT/flash-1000.json"
grep VmHWM "/proc/$FG_PID/status" | awk '{print $2}' >"$OUT/rss-kb.txt"
grep -c 'ERROR' "$OUT/server.log" >"$OUT/server-errors.txt" || true

# The database baseline: the database work of one order per transaction (hot
# row, version-checked, spread rows), 8 and 64 clients, 10 s each, written to
# $OUT/dbbench-*.txt; the tool's name to $OUT/dbbench.txt.
pgbench_baseline() {
  echo pgbench >"$OUT/dbbench.txt"
  psql "$PG_SERVER/$DB" -q -f scripts/pgbench/setup.sql
  FIRST=$(psql "$PG_SERVER/$DB" -Atc "SELECT min(id) FROM products WHERE name LIKE 'pgbench %'")
  version() { psql "$PG_SERVER/$DB" -Atc "SELECT version FROM products WHERE id = $FIRST"; }
  for clients in 8 64; do
    pgbench -n -c $clients -j 2 -T 10 -D hot="$FIRST" -f scripts/pgbench/order_hot.sql "$PG_SERVER/$DB" 2>/dev/null \
      | awk '/^tps/ {print $3; exit}' >"$OUT/dbbench-hot-$clients.txt"
    before=$(version)
    pgbench -n -c $clients -j 2 -T 10 -D hot="$FIRST" -f scripts/pgbench/order_hot_versioned.sql "$PG_SERVER/$DB" 2>/dev/null \
      | awk '/^tps/ {print $3; exit}' >"$OUT/dbbench-versioned-attempts-$clients.txt"
    echo "$(($(version) - before))" >"$OUT/dbbench-versioned-successes-$clients.txt"
    pgbench -n -c $clients -j 2 -T 10 -D first="$FIRST" -f scripts/pgbench/order_spread.sql "$PG_SERVER/$DB" 2>/dev/null \
      | awk '/^tps/ {print $3; exit}' >"$OUT/dbbench-spread-$clients.txt"
  done
}
sysbench_baseline() {
  echo "sysbench (MySQL)" >"$OUT/dbbench.txt"
  mysql -h 127.0.0.1 -u root "$DB" <scripts/sysbench/setup.sql
  FIRST=$(mysql -h 127.0.0.1 -u root -Nse "SELECT MIN(id) FROM $DB.products WHERE name LIKE 'sysbench %'")
  version() { mysql -h 127.0.0.1 -u root -Nse "SELECT version FROM $DB.products WHERE id = $FIRST"; }
  run() {
    sysbench --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=root --mysql-db=$DB \
      --threads="$1" --time=10 --mysql-ignore-errors=1213 scripts/sysbench/order.lua \
      --mode="$2" --first="$FIRST" run 2>/dev/null | awk '/transactions:/ {gsub(/\(/, "", $3); print $3; exit}'
  }
  for clients in 8 64; do
    run $clients hot >"$OUT/dbbench-hot-$clients.txt"
    before=$(version)
    run $clients versioned >"$OUT/dbbench-versioned-attempts-$clients.txt"
    echo "$(($(version) - before))" >"$OUT/dbbench-versioned-successes-$clients.txt"
    run $clients spread >"$OUT/dbbench-spread-$clients.txt"
  done
}
echo "== database baseline: one order per transaction (hot row, spread rows)"
if [ "$ENGINE" = mysql ]; then sysbench_baseline; else pgbench_baseline; fi

echo "== cache baseline: redis-benchmark"
redis-benchmark -q -n 200000 -c "$CONCURRENCY" -t get,set --csv >"$OUT/redis.csv"

python3 scripts/bench_table.py "$OUT" | tee "$OUT/table.md"
python3 scripts/bench_charts.py "$OUT"
./target/release/loadtest --compare "$OUT/flash-report.json" "$OUT/flash-nogate-report.json" --report "$OUT/flash-compare.html"
