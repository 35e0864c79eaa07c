"""Pictures of `make bench`'s side-by-side results: one SVG bar chart per comparison, drawn
from the measured medians (never by hand), for docs/benchmarks.md and the README.

`bench/run.py` calls `draw(rows)` after a full run; `python3 bench/charts.py` draws them
again from the last run's table (bench/results/latest.md). A small SVG writer: bars,
labels and values, no plotting library to install."""

import html
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs/charts"

# (file name, title, workload as it starts in the table)
CHARTS = [
    ("pipe-throughput", "Pipe throughput, 1 GiB over loopback", "pipe throughput"),
    ("pipe-cpu", "Relay CPU per GiB piped", "relay CPU per GiB piped"),
    ("rooms", "100 rooms of two: round trips per second", "100 rooms of two: round trips/s"),
    ("http-cpu", "Relay CPU per GiB over HTTP (curl to curl)", "relay CPU per GiB over HTTP"),
    ("http-rss", "Relay peak RSS during 1 GiB over HTTP", "relay peak RSS during 1 GiB over HTTP"),
    ("wormhole-cpu", "magic-wormhole servers' CPU per GiB (wormhole-rs)",
     "wormhole servers' CPU per GiB (wormhole-rs)"),
    ("wormhole-rss", "magic-wormhole servers' peak RSS (wormhole-rs)",
     "wormhole servers' peak RSS (wormhole-rs)"),
]

WIDTH, BAR, GAP, LEFT, TOP = 640, 22, 8, 190, 46


def svg(title, unit, better, bars):
    """A horizontal bar chart: `bars` is [(name, value)], duet's first."""
    top = max(v for _, v in bars) or 1
    height = TOP + len(bars) * (BAR + GAP) + 24
    span = WIDTH - LEFT - 90
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, sans-serif" font-size="13">',
           f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
           f'<text x="12" y="20" font-size="15" font-weight="bold">{html.escape(title)}</text>',
           f'<text x="12" y="37" fill="#555">{html.escape(unit)}, {better} is better '
           f'(medians of the last run)</text>']
    for i, (name, value) in enumerate(bars):
        y = TOP + i * (BAR + GAP)
        w = max(1, round(value / top * span))
        colour = "#2a6fdb" if i == 0 else "#9aa5b1"
        out.append(f'<text x="{LEFT - 8}" y="{y + BAR - 6}" text-anchor="end">'
                   f'{html.escape(name)}</text>')
        out.append(f'<rect x="{LEFT}" y="{y}" width="{w}" height="{BAR}" fill="{colour}"/>')
        out.append(f'<text x="{LEFT + w + 6}" y="{y + BAR - 6}">{value:g}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def draw(rows):
    """rows: [(workload, unit, {server: median}, better, note)] as bench/run.py keeps them.
    Writes one SVG per chart whose workload was measured; returns the files written."""
    OUT.mkdir(parents=True, exist_ok=True)
    written = []
    for name, title, start in CHARTS:
        found = next((r for r in rows if r[0].startswith(start)), None)
        if not found:
            continue
        workload, unit, meds, better, _ = found
        bars = [(server, v) for server, v in meds.items() if isinstance(v, (int, float)) and v]
        if len(bars) < 2:
            continue
        path = OUT / f"{name}.svg"
        path.write_text(svg(title, unit, better, bars))
        written.append(path)
    return written


def rows_from_table(text):
    """The rows of a results table (bench/results/latest.md), as `draw` takes them."""
    rows, current = [], None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] == "workload" or set(cells[0]) <= {"-"} and cells[1] == "---":
            continue
        workload, unit, server, median, _ = cells
        try:
            value = float(median.replace(",", ""))
        except ValueError:
            continue
        if workload:
            better = "lower" if unit in ("s", "µs", "ms", "MiB", "bytes", "KiB") else "higher"
            current = (workload, unit, {}, better, "")
            rows.append(current)
        if current:
            current[2][server] = value
    return rows


if __name__ == "__main__":
    table = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench/results/latest.md"
    for path in draw(rows_from_table(table.read_text())):
        print(path.relative_to(ROOT))
