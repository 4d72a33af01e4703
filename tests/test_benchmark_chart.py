"""The benchmark's chart (benchmarks/chart.py): drawn from the run's own figures, on log-log axes.

The figures are a `make bench BENCH_ARGS=--quick` run's (2026-12-01, this machine): the Results table of
its report, as run.py wrote it. Nothing here runs the benchmark.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SVG = "{http://www.w3.org/2000/svg}"

QUICK_REPORT = """# Benchmark: revocation authorizer vs. the proof of concept

- Date: 2026-12-01 22:10 UTC
- Total benchmark runtime: 39 s (quick run); CPU used meanwhile by processes outside the benchmark: 1.14 of 2 cores

## Results

| family | scenario | n | p50 ms | p95 ms | server requests | peak RSS MB | verdicts |
| --- | --- | ---: | ---: | ---: | --- | ---: | --- |
| CRL 10k (10,000 entries, 0.4 MB) | baseline: pyhanko per request | 3 | 148 | 416 | 10k.crl 3x200, root.crl 3x200 | 61 | valid; revoked cert → RevokedError |
| CRL 10k (10,000 entries, 0.4 MB) | authorizer: first request (cold caches) | 4 | 55.0 | 76.5 | 10k.crl 4x200, root.crl 4x200 | 80 (idle 54) | Allow/good; revoked cert → Deny/revoked |
| CRL 10k (10,000 entries, 0.4 MB) | authorizer: warm, same cert | 500 | 0.064 | 0.141 | 0 | ″ | Allow/good |
| CRL 10k (10,000 entries, 0.4 MB) | authorizer: warm, new cert of the CA | 100 | 2.85 | 7.23 | 0 | ″ | Allow/good |
| CRL 10k (10,000 entries, 0.4 MB) | authorizer: past max age, conditional GET | 1 | 17.8 | 17.8 | 10k.crl 1x304, root.crl 1x304 | ″ | Allow/good |
| CRL 100k (100,000 entries, 3.9 MB) | baseline: pyhanko per request | 2 | 1,714 | 1,769 | 100k.crl 2x200, root.crl 2x200 | 141 | valid; revoked cert → RevokedError |
| CRL 100k (100,000 entries, 3.9 MB) | authorizer: first request (cold caches) | 3 | 246 | 311 | 100k.crl 3x200, root.crl 3x200 | 130 (idle 54) | Allow/good; revoked cert → Deny/revoked |
| CRL 100k (100,000 entries, 3.9 MB) | authorizer: warm, same cert | 500 | 0.150 | 0.241 | 0 | ″ | Allow/good |
| CRL 100k (100,000 entries, 3.9 MB) | authorizer: warm, new cert of the CA | 100 | 4.26 | 8.21 | 0 | ″ | Allow/good |
| CRL 100k (100,000 entries, 3.9 MB) | authorizer: past max age, conditional GET | 1 | 17.4 | 17.4 | 100k.crl 1x304, root.crl 1x304 | ″ | Allow/good |
| OCSP (openssl ocsp, -nmin 60) | baseline: pyhanko per request | 5 | 82.5 | 363 | root.crl 5x200, ocsp 5x200 | 51 | valid; revoked cert → RevokedError |
"""  # noqa: E501

# scenario -> {entries: (p50, p95, n)}, as in the table above
QUICK = {
    "baseline: pyhanko per request": {10_000: (148, 416, 3), 100_000: (1714, 1769, 2)},
    "authorizer: first request (cold caches)": {10_000: (55.0, 76.5, 4), 100_000: (246, 311, 3)},
    "authorizer: warm, new cert of the CA": {10_000: (2.85, 7.23, 100), 100_000: (4.26, 8.21, 100)},
    "authorizer: warm, same cert": {10_000: (0.064, 0.141, 500), 100_000: (0.150, 0.241, 500)},
}


def _load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def chart(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return _load("chart", monkeypatch)


def test_the_report_table_gives_one_series_per_scenario(chart: ModuleType) -> None:
    series = chart.series_from_rows(chart.rows_from_report(QUICK_REPORT))
    assert [s.scenario for s in series] == list(QUICK)  # the proof of concept first; no OCSP, no 304 row
    for each in series:
        assert {p.entries: (p.p50_ms, p.p95_ms, p.samples) for p in each.points} == QUICK[each.scenario]


def _svg(chart: ModuleType) -> ET.Element:
    series = chart.series_from_rows(chart.rows_from_report(QUICK_REPORT))
    return ET.fromstring(chart.render_svg(series, chart.TITLE, "quick run"))


def _texts(root: ET.Element) -> dict[str, tuple[float, float]]:
    return {
        t.text or "": (float(t.get("x", "nan")), float(t.get("y", "nan"))) for t in root.iter(f"{SVG}text")
    }


def test_both_axes_are_logarithmic(chart: ModuleType) -> None:
    root = _svg(chart)
    texts = _texts(root)
    # Decade ticks, evenly spaced: 10,000 -> 100,000 on x; 0.01 ms ... 10 s on y.
    x_decade = texts["100,000"][0] - texts["10,000"][0]
    y_decade = texts["1 ms"][1] - texts["10 ms"][1]
    assert x_decade > 0 and y_decade > 0
    assert texts["100 ms"][1] - texts["1 s"][1] == pytest.approx(y_decade)
    assert {"0.01 ms", "0.1 ms", "1 ms", "10 ms", "100 ms", "1 s", "10 s"} <= set(texts)
    # Every point sits at log10 of its figures: x at its CRL size, y at its p50.
    polylines = list(root.iter(f"{SVG}polyline"))
    assert len(polylines) == len(QUICK)
    for line, figures in zip(polylines, QUICK.values(), strict=True):
        (x1, y1), (x2, y2) = (tuple(map(float, xy.split(","))) for xy in line.get("points", "").split())
        assert x1 == pytest.approx(texts["10,000"][0], abs=0.1)
        assert x2 - x1 == pytest.approx(x_decade, abs=0.1)
        (low, *_), (high, *_) = figures[10_000], figures[100_000]
        assert y1 - y2 == pytest.approx(math.log10(high / low) * y_decade, abs=0.2)


def test_the_authorizer_is_drawn_next_to_the_proof_of_concept(chart: ModuleType) -> None:
    root = _svg(chart)
    texts = set(_texts(root))
    assert "proof of concept: a new pyhanko context per request" in texts
    assert {"authorizer: first request (cold caches)", "authorizer: warm, certificate seen before"} <= texts
    assert {"1.71 s", "148 ms", "0.064 ms", "4.3 ms"} <= texts  # the p50 values, labelled
    assert "revoked entries in the CRL (log scale)" in texts
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == chart.TITLE
    assert len(list(root.iter(f"{SVG}circle"))) == 2 * len(QUICK) + len(QUICK)  # points + legend


def test_redrawn_from_a_saved_report(chart: ModuleType, tmp_path: Path) -> None:
    report = tmp_path / "results.md"
    report.write_text(QUICK_REPORT)
    assert chart.main([str(report)]) == 0
    root = ET.parse(tmp_path / chart.CHART_NAME).getroot()
    assert "quick run, 2026-12-01 22:10 UTC; from results.md" in _texts(root)


def test_no_crl_figures_no_chart(chart: ModuleType) -> None:
    with pytest.raises(ValueError):
        chart.render_svg([], chart.TITLE, "")


def test_run_draws_the_figures_it_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """run.py's chart and its report's table come from the same samples."""
    run = _load("run", monkeypatch)
    families, results = [], {}
    for entries, label in ((10_000, "10k"), (100_000, "100k")):
        families.append(run.FamilySpec(label, "crl", "", "", "", "", [], entries, entries * 39, "", ""))

        def samples(scenario: str, entries: int = entries) -> dict[str, Any]:
            p50, _p95, n = QUICK[scenario][entries]
            return {"ms": [p50] * n, "requests": {}, "verdicts": ["Allow/good"]}

        results[f"{label}/baseline"] = {
            "baseline": {**samples("baseline: pyhanko per request"), "outcomes": ["valid"]},
            "peak_rss_mb": 60.0,
        }
        results[f"{label}/authorizer"] = {
            "first": samples("authorizer: first request (cold caches)"),
            "seen": samples("authorizer: warm, same cert"),
            "new": samples("authorizer: warm, new cert of the CA"),
            "peak_rss_mb": 80.0,
            "idle_rss_mb": 54.0,
            "revoked_verdict": "Deny/revoked",
        }
    report = run.Report(run.QUICK, run.Fixture(server=None, families=families), results=results)
    drawn = {s.scenario: {p.entries: p.p50_ms for p in s.points} for s in report.chart_series()}
    table = "\n".join(row for family in families for row in report.family_rows(family))
    chart = sys.modules["chart"]
    tabled = {s.scenario: {p.entries: p.p50_ms for p in s.points} for s in chart.series_from_rows(
        chart.rows_from_report(table)
    )}  # fmt: skip
    assert set(drawn) == set(tabled) == set(QUICK)
    for scenario, points in drawn.items():
        for entries, p50 in points.items():
            assert p50 == pytest.approx(QUICK[scenario][entries][0])
            assert tabled[scenario][entries] == pytest.approx(p50, rel=0.01)  # as the table rounds it
    assert "quick run" in report.chart_subtitle()


INDEX_ROWS = """
## Shared revocation index: a new container's first request

| family | scenario | n | p50 ms | p95 ms |
| --- | --- | ---: | ---: | ---: |
| CRL 1M (1,000,000 entries, 39.0 MB, in S3) | authorizer: first request through the shared index (cold caches) | 3 | 180 | 212 |
"""  # noqa: E501


def test_the_index_row_is_drawn_as_its_own_series(chart: ModuleType) -> None:
    series = chart.series_from_rows(chart.rows_from_report(QUICK_REPORT + INDEX_ROWS))
    (index,) = [s for s in series if s.scenario == chart.INDEX_SCENARIO]
    assert [(p.entries, p.p50_ms, p.p95_ms, p.samples) for p in index.points] == [(1_000_000, 180, 212, 3)]
    root = ET.fromstring(chart.render_svg(series, chart.TITLE, "full run"))
    assert index.label in _texts(root)  # in the legend, which the SVG grows to hold
    height = float(root.get("height", "0"))
    legend = [float(t.get("y", "0")) for t in root.iter(f"{SVG}text") if t.text == index.label]
    assert legend and legend[0] < height


def test_run_charts_the_index_point_it_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    run = _load("run", monkeypatch)
    family = run.FamilySpec("1M", "crl", "", "", "", "", [], 1_000_000, 39_000_000, "", "")
    samples = {"ms": [100.0], "requests": {}, "verdicts": ["Allow/good"]}
    results = {
        "1M/baseline": {"baseline": {**samples, "outcomes": ["valid"]}, "peak_rss_mb": 1.0},
        "1M/authorizer": {"first": samples, "seen": samples, "new": samples},
    }
    index = type("IndexFixture", (), {"plan": run.FULL_INDEX})()
    report = run.Report(run.FULL, run.Fixture(server=None, families=[family], index=index), results=results)
    runs = [{"first_ms": 250.0, "cold_ms": 150.0}, {"first_ms": 270.0, "cold_ms": 170.0}]
    report.index = {"results": {"complete/index": runs}}
    drawn = {s.scenario: [(p.entries, p.p50_ms) for p in s.points] for s in report.chart_series()}
    assert drawn[sys.modules["chart"].INDEX_SCENARIO] == [(run.FULL_INDEX.complete_entries, 160.0)]


def test_a_part_run_alone_replaces_only_its_own_section(monkeypatch: pytest.MonkeyPatch) -> None:
    run = _load("run", monkeypatch)
    index_heading = run.index_scenario.HEADING
    previous = (
        "# Benchmark\n\nfamilies\n\n"
        f"{run.MEMORY_HEADING}\n\nold memory\n\n{index_heading}\n\nold index\n\n## Profiles\n\nprofiles\n"
    )
    text = run.splice(previous, f"{index_heading}\n\nnew index\n", index_heading)
    assert "new index" in text and "old index" not in text
    assert "old memory" in text and text.index("## Profiles") > text.index("new index")
    assert run.section_of(text, run.MEMORY_HEADING) == f"{run.MEMORY_HEADING}\n\nold memory\n"
    assert run.section_of("no such section", index_heading) == ""
