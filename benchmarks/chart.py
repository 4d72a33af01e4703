"""The benchmark's chart: p50 latency against CRL size, both on log scales, as a small hand-written SVG.

No plotting library: the chart is a few lines on two logarithmic axes, and SVG is text that GitHub shows
inline in the README. `run.py` writes it from the figures it has just measured, next to its report
(`benchmarks/latency-vs-crl-size.svg` by default). It can also be drawn again from a saved report:

    python benchmarks/chart.py benchmarks/results.md [-o benchmarks/latency-vs-crl-size.svg]

which reads the report's "Results" table, so the chart always shows one run's figures, the run the report
describes.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

CHART_NAME = "latency-vs-crl-size.svg"

# The index scenario's row (index_scenario.py): a first request with cold caches as the families measure
# it (the runtime dropped, boto3 loaded), the CRL's index read from S3.
INDEX_SCENARIO = "authorizer: first request through the shared index (cold caches)"

# Scenario (as run.py labels it in the report) -> the series label, colour and dash pattern.
SERIES = (
    ("baseline: pyhanko per request", "proof of concept: a new pyhanko context per request", "#c0392b", ""),
    ("authorizer: first request (cold caches)", "authorizer: first request (cold caches)", "#e67e22", "6 3"),
    (
        INDEX_SCENARIO,
        "authorizer: first request through the shared index (cold caches, CRL in S3)",
        "#7d3c98",
        "",
    ),
    ("authorizer: warm, new cert of the CA", "authorizer: warm, new certificate of the CA", "#2471a3", "2 3"),
    ("authorizer: warm, same cert", "authorizer: warm, certificate seen before", "#1e8449", ""),
)

WIDTH, HEIGHT = 760, 460
LEFT, RIGHT, TOP, BOTTOM = 78, 24, 64, 150  # plot margins; the legend sits below the plot


@dataclass(frozen=True)
class Point:
    entries: int  # revoked entries in the CRL
    p50_ms: float
    p95_ms: float
    samples: int


@dataclass(frozen=True)
class Series:
    scenario: str
    label: str
    color: str
    dash: str
    points: tuple[Point, ...]


def series_from_rows(rows: Sequence[tuple[str, int, Point]]) -> list[Series]:
    """(scenario, entries, point) rows -> one series per known scenario, points by CRL size."""
    found = []
    for scenario, label, color, dash in SERIES:
        points = sorted((p for s, _, p in rows if s == scenario), key=lambda p: p.entries)
        if points:
            found.append(Series(scenario, label, color, dash, tuple(points)))
    return found


_ROW = re.compile(
    r"^\| CRL \S+ \(([\d,]+) entries[^|]*\| ([^|]+?) \| (\d+) \| ([\d,.]+) \| ([\d,.]+) \|", re.MULTILINE
)


def rows_from_report(markdown: str) -> list[tuple[str, int, Point]]:
    """The CRL rows of a run.py report's "Results" table."""
    rows = []
    for entries, scenario, n, p50, p95 in _ROW.findall(markdown):
        point = Point(int(entries.replace(",", "")), _number(p50), _number(p95), int(n))
        rows.append((scenario.strip(), point.entries, point))
    return rows


def _number(text: str) -> float:
    return float(text.replace(",", ""))


# ---- drawing ----------------------------------------------------------------------------------------------


def fmt_ms(value: float) -> str:
    """Milliseconds as the reports print them: three significant figures or so, "-" for no value."""
    if math.isnan(value):
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _decades(low: float, high: float) -> tuple[int, int]:
    return math.floor(math.log10(low)), math.ceil(math.log10(high))


def _ms_label(ms: float) -> str:
    if ms >= 1000:
        return f"{ms / 1000:g} s"
    return f"{ms:g} ms"


def _value_label(ms: float) -> str:
    if ms >= 1000:
        return f"{ms / 1000:.3g} s"
    if ms >= 10:
        return f"{ms:.0f} ms"
    return f"{ms:.2g} ms"  # 4.3 ms, 0.064 ms


def _entries_label(entries: float) -> str:
    return f"{entries:,.0f}"


def render_svg(series: Sequence[Series], title: str, subtitle: str) -> str:
    """The chart as an SVG document (log x: CRL entries; log y: p50 ms, with a p50-p95 bar)."""
    points = [p for s in series for p in s.points]
    if not points:
        raise ValueError("no CRL figures to chart")
    x_decades = _decades(min(p.entries for p in points), max(p.entries for p in points))
    y_lo, y_hi = _decades(min(p.p50_ms for p in points), max(max(p.p95_ms, p.p50_ms) for p in points))
    x_lo, x_hi = x_decades[0] - 0.3, x_decades[1] + 0.3  # padding: no point on the frame
    if y_hi == y_lo:
        y_hi += 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    height = HEIGHT + max(0, 58 + 20 * len(series) + 12 - BOTTOM)  # room for every legend line

    def x(entries: float) -> float:
        return LEFT + (math.log10(entries) - x_lo) / (x_hi - x_lo) * plot_w

    def y(ms: float) -> float:
        return TOP + plot_h - (math.log10(ms) - y_lo) / (y_hi - y_lo) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12" '
        'role="img" aria-labelledby="title desc">',
        f'<title id="title">{escape(title)}</title>',
        f'<desc id="desc">{escape(_description(series))}</desc>',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{escape(title)}</text>',
        f'<text x="{LEFT}" y="44" fill="#555555">{escape(subtitle)}</text>',
    ]
    # Grid: decades (labelled) and the 2..9 steps between them (faint).
    for decade in range(y_lo, y_hi + 1):
        for step in range(1, 10) if decade < y_hi else (1,):
            ms = step * 10.0**decade
            yy = y(ms)
            major = step == 1
            out.append(
                f'<line x1="{LEFT}" y1="{yy:.1f}" x2="{LEFT + plot_w}" y2="{yy:.1f}" '
                f'stroke="{"#cccccc" if major else "#eeeeee"}" stroke-width="1"/>'
            )
            if major:
                out.append(
                    f'<text x="{LEFT - 8}" y="{yy + 4:.1f}" text-anchor="end">{escape(_ms_label(ms))}</text>'
                )
    for decade in range(math.ceil(x_lo), math.floor(x_hi) + 1):
        xx = x(10.0**decade)
        out.append(f'<line x1="{xx:.1f}" y1="{TOP}" x2="{xx:.1f}" y2="{TOP + plot_h}" stroke="#cccccc"/>')
        out.append(
            f'<text x="{xx:.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">'
            f"{_entries_label(10.0**decade)}</text>"
        )
    out += [
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888888"/>',
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h + 38}" text-anchor="middle">'
        "revoked entries in the CRL (log scale)</text>",
        f'<text transform="translate(18 {TOP + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
        "handler time, p50 (log scale; bar: to p95)</text>",
    ]
    for each in series:
        dash = f' stroke-dasharray="{each.dash}"' if each.dash else ""
        coords = " ".join(f"{x(p.entries):.1f},{y(p.p50_ms):.1f}" for p in each.points)
        out.append(f'<polyline points="{coords}" fill="none" stroke="{each.color}" stroke-width="2"{dash}/>')
        for p in each.points:
            xx, yy = x(p.entries), y(p.p50_ms)
            if p.p95_ms > p.p50_ms:
                top = y(p.p95_ms)
                out.append(
                    f'<line x1="{xx:.1f}" y1="{yy:.1f}" x2="{xx:.1f}" y2="{top:.1f}" '
                    f'stroke="{each.color}" stroke-width="1"/>'
                    f'<line x1="{xx - 3:.1f}" y1="{top:.1f}" x2="{xx + 3:.1f}" y2="{top:.1f}" '
                    f'stroke="{each.color}" stroke-width="1"/>'
                )
            out.append(
                f'<circle cx="{xx:.1f}" cy="{yy:.1f}" r="3.5" fill="{each.color}">'
                f"<title>{escape(each.label)}: {_entries_label(p.entries)} entries, p50 "
                f"{_value_label(p.p50_ms)}, p95 {_value_label(p.p95_ms)}, n={p.samples}</title></circle>"
            )
            out.append(
                f'<text x="{xx + 7:.1f}" y="{yy - 6:.1f}" font-size="11" fill="{each.color}" '
                'stroke="#ffffff" stroke-width="3" paint-order="stroke">'
                f"{escape(_value_label(p.p50_ms))}</text>"
            )
    legend_top = TOP + plot_h + 58
    for index, each in enumerate(series):
        yy = legend_top + 20 * index
        dash = f' stroke-dasharray="{each.dash}"' if each.dash else ""
        out.append(
            f'<line x1="{LEFT}" y1="{yy}" x2="{LEFT + 28}" y2="{yy}" stroke="{each.color}" '
            f'stroke-width="2"{dash}/>'
            f'<circle cx="{LEFT + 14}" cy="{yy}" r="3.5" fill="{each.color}"/>'
            f'<text x="{LEFT + 36}" y="{yy + 4}">{escape(each.label)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _description(series: Sequence[Series]) -> str:
    parts = []
    for each in series:
        figures = ", ".join(f"{_entries_label(p.entries)}: {_value_label(p.p50_ms)}" for p in each.points)
        parts.append(f"{each.label} (p50) - {figures}")
    return "; ".join(parts)


def write_chart(series: Sequence[Series], path: Path, title: str, subtitle: str) -> Path:
    path.write_text(render_svg(series, title, subtitle))
    return path


TITLE = "Revocation check latency against CRL size"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("report", type=Path, help="a report written by run.py (results.md)")
    parser.add_argument(
        "-o", "--output", type=Path, help=f"the SVG (default: {CHART_NAME} beside the report)"
    )
    args = parser.parse_args(argv)
    text = args.report.read_text()
    series = series_from_rows(rows_from_report(text))
    runtime = re.search(r"^- Total benchmark runtime: .*?\((quick|full) run\)", text, re.MULTILINE)
    date = re.search(r"^- Date: (.+)$", text, re.MULTILINE)
    kind = runtime.group(1) if runtime else "unknown"
    subtitle = f"{kind} run, {date.group(1) if date else 'undated'}; from {args.report.name}"
    output = args.output or args.report.with_name(CHART_NAME)
    write_chart(series, output, TITLE, subtitle)
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
