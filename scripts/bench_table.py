"""Turns the outputs of scripts/bench.sh into the tables of docs/benchmarks.md
(scripts/bench_charts.py imports its figures for the charts)."""
import csv
import json
import re
import sys
from pathlib import Path

out = Path(sys.argv[1])


def report(name):
    return json.loads((out / f"{name}.json").read_text())


def number(name, default=0.0):
    path = out / name
    text = path.read_text().strip() if path.exists() else ""
    return float(text) if text else default


def wrk(name):
    """requests, seconds, req/s, p50 ms, p99 ms, non-2xx/3xx from a wrk --latency output."""
    text = (out / f"{name}.wrk").read_text()
    requests, seconds = re.search(r"(\d+) requests in ([\d.]+)(m?s)", text).groups()[:2]
    unit = re.search(r"\d+ requests in [\d.]+(m?s)", text).group(1)
    seconds = float(seconds) / (1000 if unit == "ms" else 1)

    def percentile(p):
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", text, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "requests": int(requests),
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "p50": percentile(50),
        "p99": percentile(99),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "seconds": seconds,
    }


def cpu_us_per_answer(name, answers, process="cpu"):
    path = out / f"{name}.{process}"
    if not path.exists() or not answers:
        return None
    ticks, per_second = path.read_text().split()
    return float(ticks) / float(per_second) * 1e6 / answers


tool = (out / "dbbench.txt").read_text().strip() if (out / "dbbench.txt").exists() else "pgbench"
hello = wrk("hello")
hello_redis = wrk("hello-redis")
hello_store = wrk("hello-store")
replay = wrk("replay")
soldout = wrk("soldout")
spread = report("spread")
flash = report("flash")
nogate = report("flash-nogate")
flash1000 = report("flash-1000")
pg_hot = max(number("dbbench-hot-8.txt"), number("dbbench-hot-64.txt"))
pg_spread = max(number("dbbench-spread-8.txt"), number("dbbench-spread-64.txt"))
pg_versioned = {c: number(f"dbbench-versioned-successes-{c}.txt") / 10 for c in (8, 64)}
pg_versioned_attempts = {c: number(f"dbbench-versioned-attempts-{c}.txt") for c in (8, 64)}
pg_versioned_best = max(pg_versioned.values())
redis = {row[0]: float(row[1]) for row in csv.reader((out / "redis.csv").read_text().splitlines()) if len(row) > 1 and row[1][0].isdigit()}
rss_mb = number("rss-kb.txt") / 1024


def batch_metrics(name):
    """count, sum and cumulative buckets of flashguard_order_batch_size in a snapshot."""
    path = out / f"batches-{name}.txt"
    values = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


def batch_line(label, before, after):
    b, a = batch_metrics(before), batch_metrics(after)
    delta = {key: a.get(key, 0) - b.get(key, 0) for key in a}
    batches = delta.get("flashguard_order_batch_size_count", 0)
    orders = delta.get("flashguard_order_batch_size_sum", 0)
    if not batches:
        return f"- group commit, {label}: no batch"
    buckets = sorted(
        (float(key.split('le="')[1].split('"')[0]), count)
        for key, count in delta.items()
        if "_bucket" in key and 'le="+Inf"' not in key
    )
    shares, previous = [], 0
    for bound, cumulative in buckets:
        if cumulative - previous:
            shares.append(f"≤{bound:.0f}: {cumulative - previous:.0f}")
        previous = cumulative
    return f"- group commit, {label}: {orders:,.0f} buyers (orders and refusals) in {batches:,.0f} transactions, {orders / batches:.1f} per transaction; batches by size {', '.join(shares)}"


def cell_cpu(value):
    return "" if value is None else f"{value:,.0f} µs"


def row(what, value, unit, baseline_name, baseline, p50, p99, cpu, target):
    ratio = value / baseline if baseline else 0
    mark = "" if target is None else (" ✓" if ratio >= target else " ✗")
    target_text = "" if target is None else f"≥ {target:.0%}"
    return (
        f"| {what} | {value:,.0f} {unit} | {baseline_name}: {baseline:,.0f} | {ratio:.0%}{mark} "
        f"| {target_text} | {p50:.1f} / {p99:.1f} ms | {cell_cpu(cpu)} |"
    )


def lt(r, name, per):
    return row(
        name,
        r[per] or 0,
        "orders/s",
        *BASELINES[name],
        r["latency_ms"]["p50"],
        r["latency_ms"]["p99"],
        cpu_us_per_answer(KEYS[name], r["requests"]),
        TARGETS.get(name),
    )


BASELINES = {
    "orders on spread products": (f"{tool} spread", pg_spread),
    "flash-sale orders (gate on)": (f"{tool} hot row", pg_hot),
    "flash-sale orders (gate off, version lock only)": (f"{tool} hot row", pg_hot),
}
KEYS = {
    "orders on spread products": "spread",
    "flash-sale orders (gate on)": "flash",
    "flash-sale orders (gate off, version lock only)": "flash-nogate",
}
# The targets of issue 22 (docs/benchmarks.md).
TARGETS = {"orders on spread products": 1.0, "flash-sale orders (gate on)": 2.5}

lines = [
    "| measured | flashguard | baseline | ratio | target | p50 / p99 | server CPU per answer |",
    "|---|---|---|---|---|---|---|",
    row("replayed request (idempotency_key answers)", replay["rate"], "req/s", "hello-world actix (wrk)", hello["rate"], replay["p50"], replay["p99"], cpu_us_per_answer("replay", replay["requests"]), 0.6),
    row("sold-out answers after the sale (front door answers)", soldout["rate"], "req/s", "hello-world actix (wrk)", hello["rate"], soldout["p50"], soldout["p99"], cpu_us_per_answer("soldout", soldout["requests"]), 0.7),
    lt(spread, "orders on spread products", "throughput_per_sec"),
    lt(flash, "flash-sale orders (gate on)", "orders_per_sec"),
    lt(nogate, "flash-sale orders (gate off, version lock only)", "orders_per_sec"),
    "",
    f"- hello-world (wrk): {hello['rate']:,.0f} req/s, p50 {hello['p50']:.2f} ms, p99 {hello['p99']:.2f} ms, server CPU {cell_cpu(cpu_us_per_answer('hello', hello['requests']))} per answer",
    f"- hello-world plus one Redis round trip (wrk, the floor of an answer that asks Redis once): {hello_redis['rate']:,.0f} req/s = {hello_redis['rate'] / hello['rate']:.0%} of hello-world, p50 {hello_redis['p50']:.2f} ms, p99 {hello_redis['p99']:.2f} ms, server CPU {cell_cpu(cpu_us_per_answer('hello-redis', hello_redis['requests']))} per answer; "
    f"replay = {replay['rate'] / hello_redis['rate']:.0%} of it, sold-out = {soldout['rate'] / hello_redis['rate']:.0%} of it",
    f"- hello-world plus one Redis round trip that stores an answer under a new key (wrk, `SET … NX GET PX`: the floor of a sold-out answer to a new key, which the contract stores): {hello_store['rate']:,.0f} req/s = {hello_store['rate'] / hello['rate']:.0%} of hello-world, p50 {hello_store['p50']:.2f} ms, p99 {hello_store['p99']:.2f} ms, server CPU {cell_cpu(cpu_us_per_answer('hello-store', hello_store['requests']))} per answer; sold-out = {soldout['rate'] / hello_store['rate']:.0%} of it",
    "- Redis server CPU per answer (it shares the two cores): " + ", ".join(
        f"{label} {cpu_us_per_answer(name, answers, 'redis-cpu') or 0:.1f} µs"
        for label, name, answers in [
            ("hello-world plus one round trip", "hello-redis", hello_redis["requests"]),
            ("hello-world plus one storing round trip", "hello-store", hello_store["requests"]),
            ("replay", "replay", replay["requests"]),
            ("sold-out", "soldout", soldout["requests"]),
        ]
    ),
    f"- wrk answers that were not 2xx: replay {replay['non_2xx']:,} of {replay['requests']:,} (expected 0: every replay is the stored 201); sold-out {soldout['non_2xx']:,} of {soldout['requests']:,} (expected all: 409 sold_out)",
    f"- flash sale: {flash['users']} users, {flash['outcome']['orders_created']} units sold in {flash['outcome']['sold_out_after_secs']:.2f} s (gate on) vs {nogate['outcome']['sold_out_after_secs']:.2f} s (gate off); the load tester's requests per order phase: spread {spread['requests']:,}, flash {flash['requests']:,}",
    f"- replies in the gated flash sale: {json.dumps(flash['replies'])}; by defense: {json.dumps(flash['defenses'])}",
    f"- {tool}, one order per transaction: conditional decrement on the hot row {number('dbbench-hot-8.txt'):,.0f} tps at 8 clients, {number('dbbench-hot-64.txt'):,.0f} at 64; "
    f"version-checked (as `version_lock`): {pg_versioned[8]:,.0f} successful orders/s at 8 clients ({pg_versioned_attempts[8]:,.0f} attempts/s), {pg_versioned[64]:,.0f} at 64 ({pg_versioned_attempts[64]:,.0f} attempts/s); "
    f"spread {number('dbbench-spread-8.txt'):,.0f} at 8, {number('dbbench-spread-64.txt'):,.0f} at 64",
    f"- flash-sale orders against the version-checked {tool} ({pg_versioned_best:,.0f}/s): gate on {(flash['orders_per_sec'] or 0) / pg_versioned_best:.0%}, gate off {(nogate['orders_per_sec'] or 0) / pg_versioned_best:.0%}" if pg_versioned_best else f"- version-checked {tool} made no successful order",
    batch_line("flash sale (gate on)", "before-flash", "after-flash"),
    batch_line("flash sale (gate off)", "before-nogate", "after-nogate"),
    f"- redis-benchmark: {', '.join(f'{k} {v:,.0f}/s' for k, v in redis.items())}",
    f"- peak RSS of flashguard after a flash sale at 1000 connections: {rss_mb:.0f} MB (target ≤ 100 MB) {'✓' if rss_mb <= 100 else '✗'}; p50 / p99 {flash1000['latency_ms']['p50']:.1f} / {flash1000['latency_ms']['p99']:.1f} ms",
    f"- audits: spread {'OK' if spread['audit_ok'] else 'FAILED'}, flash {'OK' if flash['audit_ok'] else 'FAILED'}, gate off {'OK' if nogate['audit_ok'] else 'FAILED'}, 1000 connections {'OK' if flash1000['audit_ok'] else 'FAILED'}; server log ERROR lines: {number('server-errors.txt'):.0f}",
]
if __name__ == "__main__":
    print("\n".join(lines))
