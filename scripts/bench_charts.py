"""Draws the charts of docs/benchmarks.md from the outputs of scripts/bench.sh:
throughput and server CPU per answer for each phase, flashguard beside the
baseline it is measured against. Plain SVG written by hand: no plotting
library to install, and the files diff as text.

    python3 scripts/bench_charts.py target/bench     # writes target/bench/charts/*.svg
"""
import sys
from html import escape
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

BAR = 18
GAP = 10
LABEL_WIDTH = 230
PLOT_WIDTH = 420
FLASHGUARD = "#2563eb"
BASELINE = "#9ca3af"
REDIS = "#dc2626"


def svg(title, rows, legend, scale_max, unit_text):
    """Horizontal bars: each row is (label, [(value, colour, text), …]), one bar per value."""
    height = 40 + sum(len(bars) * BAR + GAP for _, bars in rows) + 40
    width = LABEL_WIDTH + PLOT_WIDTH + 280
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="system-ui, sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="600">{escape(title)}</text>',
    ]
    y = 36
    for label, bars in rows:
        parts.append(f'<text x="10" y="{y + BAR * len(bars) / 2 + 4:.0f}">{escape(label)}</text>')
        for value, colour, text in bars:
            length = 0 if not scale_max else max(1.0, PLOT_WIDTH * value / scale_max)
            parts.append(
                f'<rect x="{LABEL_WIDTH}" y="{y}" width="{length:.1f}" height="{BAR - 3}" fill="{colour}"/>'
            )
            parts.append(f'<text x="{LABEL_WIDTH + length + 6:.1f}" y="{y + BAR - 7}">{escape(text)}</text>')
            y += BAR
        y += GAP
    x = 10
    for colour, text in legend:
        parts.append(f'<rect x="{x}" y="{y + 8}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{x + 18}" y="{y + 18}">{escape(text)}</text>')
        x += 30 + 7 * len(text)
    parts.append(f'<text x="{width - 10}" y="{y + 18}" text-anchor="end" fill="#6b7280">{escape(unit_text)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    out = Path(sys.argv[1])
    import bench_table as t  # the figures, read once by the table's code

    charts = out / "charts"
    charts.mkdir(exist_ok=True)
    phases = [
        ("replay (wrk)", t.replay["rate"], "hello-world", t.hello["rate"], "req/s"),
        ("sold-out answers (wrk)", t.soldout["rate"], "hello-world", t.hello["rate"], "req/s"),
        ("sold-out: the storing floor", t.soldout["rate"], "hello + SET NX GET", t.hello_store["rate"], "req/s"),
        ("orders, spread products", t.spread["throughput_per_sec"], f"{t.tool} spread", t.pg_spread, "orders/s"),
        ("flash sale, gate on", t.flash["orders_per_sec"] or 0, f"{t.tool} hot row", t.pg_hot, "orders/s"),
        ("flash sale, gate off", t.nogate["orders_per_sec"] or 0, f"{t.tool} hot row", t.pg_hot, "orders/s"),
    ]
    rows = []
    for label, ours, base_name, base, unit in phases:
        ratio = ours / base if base else 0
        rows.append((label, [
            (ratio, FLASHGUARD, f"flashguard {ours:,.0f} {unit} = {ratio:.0%}"),
            (1.0, BASELINE, f"{base_name} {base:,.0f} {unit}"),
        ]))
    scale = max(value for _, bars in rows for value, _, _ in bars)
    (charts / "throughput.svg").write_text(svg(
        "Throughput against its baseline (baseline = 100 %)", rows,
        [(FLASHGUARD, "flashguard"), (BASELINE, "baseline, same run")], scale, "bar length: share of the baseline"))

    cpu_phases = [
        ("hello-world", "hello", t.hello["requests"]),
        ("hello + one Redis round trip", "hello-redis", t.hello_redis["requests"]),
        ("hello + SET NX GET (storing)", "hello-store", t.hello_store["requests"]),
        ("flashguard replay", "replay", t.replay["requests"]),
        ("flashguard sold-out", "soldout", t.soldout["requests"]),
        ("flashguard spread orders", "spread", t.spread["requests"]),
        ("flashguard flash sale, gate on", "flash", t.flash["requests"]),
        ("flashguard flash sale, gate off", "flash-nogate", t.nogate["requests"]),
    ]
    rows = []
    for label, name, answers in cpu_phases:
        server = t.cpu_us_per_answer(name, answers) or 0
        redis = t.cpu_us_per_answer(name, answers, "redis-cpu") or 0
        colour = BASELINE if name.startswith("hello") else FLASHGUARD
        rows.append((label, [(server, colour, f"server {server:,.1f} µs"), (redis, REDIS, f"Redis {redis:,.1f} µs")]))
    scale = max(value for _, bars in rows for value, _, _ in bars)
    (charts / "cpu.svg").write_text(svg(
        "CPU per answer (µs, from /proc)", rows,
        [(BASELINE, "baseline server"), (FLASHGUARD, "flashguard server"), (REDIS, "redis-server")], scale, "µs per answer"))
    print(f"charts: {charts / 'throughput.svg'}, {charts / 'cpu.svg'}")


if __name__ == "__main__":
    main()
