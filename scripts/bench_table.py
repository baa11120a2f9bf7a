"""Turns the outputs of scripts/bench.sh into the markdown table of docs/benchmarks.md."""
import csv
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])


def report(name):
    return json.loads((out / f"{name}.json").read_text())


def number(name):
    text = (out / name).read_text().strip()
    return float(text) if text else 0.0


hello = report("hello")
replay = report("replay")
spread = report("spread")
flash = report("flash")
nogate = report("flash-nogate")
flash1000 = report("flash-1000")
soldout = report("soldout")
pg_hot = max(number("pgbench-hot-8.txt"), number("pgbench-hot-64.txt"))
pg_spread = max(number("pgbench-spread-8.txt"), number("pgbench-spread-64.txt"))
redis = {row[0]: float(row[1]) for row in csv.reader((out / "redis.csv").read_text().splitlines()) if len(row) > 1 and row[1][0].isdigit()}
rss_mb = number("rss-kb.txt") / 1024


def count(r, key):
    return r["replies"].get(key, 0)


def row(what, value, unit, baseline_name, baseline, p99, target):
    ratio = value / baseline if baseline else 0
    mark = "" if target is None else (" ✓" if ratio >= target else " ✗")
    target_text = "" if target is None else f"≥ {target:.0%}"
    return f"| {what} | {value:,.0f} {unit} | {baseline_name}: {baseline:,.0f} | {ratio:.0%}{mark} | {target_text} | {p99} |"


lines = [
    "| measured | flashguard | baseline | ratio | target | p99 |",
    "|---|---|---|---|---|---|",
    row("replayed request (idempotency_key answers)", replay["throughput_per_sec"], "req/s", "hello-world actix", hello["throughput_per_sec"], f"{replay['latency_ms']['p99']:.1f} ms", 0.5),
    row("sold-out answers after the sale (stock_gate answers)", soldout["throughput_per_sec"], "req/s", "hello-world actix", hello["throughput_per_sec"], f"{soldout['latency_ms']['p99']:.1f} ms", 0.5),
    row("sold-out answers during the sale (whole run)", flash["sold_out_per_sec"] or 0, "req/s", "hello-world actix", hello["throughput_per_sec"], f"{flash['latency_ms']['p99']:.1f} ms", None),
    row("orders on spread products", spread["throughput_per_sec"], "orders/s", "pgbench spread", pg_spread, f"{spread['latency_ms']['p99']:.1f} ms", 0.7),
    row("flash sale orders (gate on)", flash["orders_per_sec"] or 0, "orders/s", "pgbench hot row", pg_hot, f"{flash['latency_ms']['p99']:.1f} ms", 0.9),
    row("flash sale orders (gate off, version lock only)", nogate["orders_per_sec"] or 0, "orders/s", "pgbench hot row", pg_hot, f"{nogate['latency_ms']['p99']:.1f} ms", None),
    "",
    f"- flash sale: {flash['users']} users, {flash['outcome']['orders_created']} units sold in {flash['outcome']['sold_out_after_secs']:.2f} s (gate on) vs {nogate['outcome']['sold_out_after_secs']:.2f} s (gate off); audit {'OK' if flash['audit_ok'] and nogate['audit_ok'] else 'FAILED'}",
    f"- replies in the gated flash sale: {json.dumps(flash['replies'])}; by defense: {json.dumps(flash['defenses'])}",
    f"- hello-world: {hello['throughput_per_sec']:,.0f} req/s, p99 {hello['latency_ms']['p99']:.1f} ms; redis-benchmark: {', '.join(f'{k} {v:,.0f}/s' for k, v in redis.items())}",
    f"- pgbench order transaction: hot row {number('pgbench-hot-8.txt'):,.0f} tps at 8 clients, {number('pgbench-hot-64.txt'):,.0f} at 64; spread {number('pgbench-spread-8.txt'):,.0f} at 8, {number('pgbench-spread-64.txt'):,.0f} at 64",
    f"- peak RSS of flashguard after a flash sale at 1000 connections: {rss_mb:.0f} MB (target ≤ 100 MB) {'✓' if rss_mb <= 100 else '✗'}; that run's audit {'OK' if flash1000['audit_ok'] else 'FAILED'}, p99 {flash1000['latency_ms']['p99']:.1f} ms",
]
print("\n".join(lines))
