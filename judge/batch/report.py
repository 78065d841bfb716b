"""An HTML report of a scored file (``thinking-judge batch --report report.html``).

Pure: result records in (the lines of a ``thinking-judge batch`` output file, as dicts),
one self-contained HTML page out. The page holds its pictures as inline SVG and its
style inline: it names no external URL, so it opens the same offline, attached to a
mail, or in a CI artifact.

What it shows:

* the counts (records, scored, failed) and the mean score;
* the histogram of the scores on the model's eleven-value grid, and, when the results
  carry expected scores, their histogram in ten bins and the **calibration** of the
  expected score against the greedy score (per greedy value: how many, the mean and the
  range of their expected scores, and a scatter plot with the diagonal);
* the failures by kind (``error_kind``), each kind with its count, how many may succeed
  when retried, and a few examples;
* the slowest items (``latency_s``).

Nothing a record carries is copied whole: every text shown (ids, errors, the model's
answer) is scrubbed of base64 images and data URLs by :func:`backends.scrubbing.scrub`
and cut to a bounded excerpt; prompts are never shown (a result record does not hold
them), and every text is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from backends.scrubbing import scrub
from judge.core.parse import SCORE_GRID

GRID = [float(value) for value in SCORE_GRID]
EXAMPLES_PER_KIND = 3
SLOWEST = 10
ERROR_CHARS = 240
RAW_CHARS = 80
ID_CHARS = 60
EXPECTED_BINS = 10

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #1f2328; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.6rem; text-align: left;
         vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.excerpt { font-family: ui-monospace, monospace; font-size: 0.85rem; overflow-wrap: anywhere; }
.figures { display: flex; flex-wrap: wrap; gap: 1.5rem; }
figure { margin: 0; } figcaption { font-size: 0.85rem; color: #59636e; }
.note { color: #59636e; font-size: 0.9rem; }
"""


def _text(value: Any, limit: int) -> str:
    """A bounded, scrubbed, HTML-escaped excerpt of ``value``."""
    return html.escape(scrub(str(value), limit=limit))


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _bar_chart(labels: Sequence[str], counts: Sequence[int], title: str, color: str) -> str:
    """A vertical bar chart as inline SVG, counts written over the bars."""
    width, height, left, bottom, top = 560, 270, 40, 40, 42
    plot_w, plot_h = width - left - 10, height - bottom - top
    most = max(counts, default=0) or 1
    slot = plot_w / max(len(counts), 1)
    parts = [
        f'<svg role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" class="chart">',
        f"<title>{html.escape(title)}</title>",
        f'<text x="{width / 2:.0f}" y="18" text-anchor="middle" font-size="13">'
        f"{html.escape(title)}</text>",
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#57606a"/>',
    ]
    for i, (label, count) in enumerate(zip(labels, counts, strict=True)):
        bar_h = plot_h * count / most
        x = left + i * slot + slot * 0.1
        y = top + plot_h - bar_h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.8:.1f}" '
            f'height="{bar_h:.1f}" fill="{color}"><title>{html.escape(label)}: {count}'
            "</title></rect>"
        )
        if count:
            parts.append(
                f'<text x="{x + slot * 0.4:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                f'font-size="11">{count}</text>'
            )
        parts.append(
            f'<text x="{x + slot * 0.4:.1f}" y="{top + plot_h + 15}" text-anchor="middle" '
            f'font-size="11">{html.escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _scatter(points: Sequence[tuple[float, float]], title: str) -> str:
    """Expected score (y) against greedy score (x) as inline SVG, with the diagonal."""
    size, margin = 300, 40
    plot = size - 2 * margin

    def at(x: float, y: float) -> tuple[float, float]:
        return margin + x * plot, size - margin - y * plot

    x0, y0 = at(0, 0)
    x1, y1 = at(1, 1)
    parts = [
        f'<svg role="img" width="{size}" height="{size}" '
        f'viewBox="0 0 {size} {size}" class="chart">',
        f"<title>{html.escape(title)}</title>",
        f'<rect x="{x0}" y="{y1}" width="{plot}" height="{plot}" fill="none" stroke="#57606a"/>',
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#8c959f" stroke-dasharray="4"/>',
        f'<text x="{size / 2}" y="{size - 8}" text-anchor="middle" font-size="11">'
        "greedy score</text>",
        f'<text x="12" y="{size / 2}" text-anchor="middle" font-size="11" '
        f'transform="rotate(-90 12 {size / 2})">expected score</text>',
    ]
    for tick in (0.0, 0.5, 1.0):
        tx, _ = at(tick, 0)
        _, ty = at(0, tick)
        parts.append(
            f'<text x="{tx}" y="{y0 + 14}" text-anchor="middle" font-size="10">{tick:g}</text>'
        )
        parts.append(
            f'<text x="{x0 - 4}" y="{ty + 3}" text-anchor="end" font-size="10">{tick:g}</text>'
        )
    for x, y in points:
        cx, cy = at(x, y)
        parts.append(
            f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="#0969da" '
            'fill-opacity="0.5"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    """An HTML table; the cells are HTML already (escaped by the caller)."""

    def cell(tag: str, i: int, value: str) -> str:
        return f'<{tag} class="num">{value}</{tag}>' if i in numeric else f"<{tag}>{value}</{tag}>"

    head = "".join(cell("th", i, html.escape(h)) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", i, value) for i, value in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _grid_label(value: float) -> str:
    return "1" if value == 1.0 else "0" if value == 0.0 else f"{value:.1f}"


def _scores_section(scored: Sequence[Mapping[str, Any]]) -> str:
    counts = Counter(min(GRID, key=lambda g: abs(g - float(r["score"]))) for r in scored)
    labels = [_grid_label(g) for g in GRID]
    chart = _bar_chart(labels, [counts[g] for g in GRID], "Scores (greedy)", "#2da44e")
    return (
        '<section id="scores"><h2>Scores</h2><div class="figures"><figure>'
        f'<div id="histogram">{chart}</div><figcaption>{len(scored)} scored records, '
        "by the model's answer on its eleven-value grid.</figcaption></figure></div></section>"
    )


def _calibration_section(scored: Sequence[Mapping[str, Any]]) -> str:
    pairs = [
        (float(r["score"]), expected)
        for r in scored
        if (expected := _number(r.get("expected_score"))) is not None
    ]
    if not pairs:
        return (
            '<section id="calibration"><h2>Expected scores</h2><p class="note">No expected '
            "scores in this file (run with <code>--expected-score</code> to have them).</p>"
            "</section>"
        )
    bins = [0] * EXPECTED_BINS
    for _, expected in pairs:
        bins[min(int(expected * EXPECTED_BINS), EXPECTED_BINS - 1)] += 1
    labels = [f"{i / EXPECTED_BINS:.1f}" for i in range(EXPECTED_BINS)]
    histogram = _bar_chart(labels, bins, "Expected scores (bins of 0.1)", "#0969da")
    by_greedy: dict[float, list[float]] = defaultdict(list)
    for greedy, expected in pairs:
        by_greedy[greedy].append(expected)
    rows = [
        [
            _grid_label(greedy),
            str(len(values)),
            f"{sum(values) / len(values):.3f}",
            f"{min(values):.3f} to {max(values):.3f}",
        ]
        for greedy, values in sorted(by_greedy.items())
    ]
    table = _table(
        ["greedy score", "records", "mean expected score", "range"], rows, numeric={1, 2}
    )
    scatter = _scatter(pairs, "Expected against greedy score")
    return (
        '<section id="calibration"><h2>Expected scores and calibration</h2>'
        f'<div class="figures"><figure>{histogram}<figcaption>{len(pairs)} expected scores.'
        f"</figcaption></figure><figure>{scatter}<figcaption>Each record's expected score "
        "against its greedy score; on the dashed diagonal they agree.</figcaption></figure>"
        f"</div>{table}</section>"
    )


def _failures_section(failed: Sequence[Mapping[str, Any]]) -> str:
    if not failed:
        return '<section id="failures"><h2>Failures</h2><p>None.</p></section>'
    by_kind: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in failed:
        by_kind[str(record.get("error_kind") or "unknown")].append(record)
    parts = ['<section id="failures"><h2>Failures by kind</h2>']
    summary = [
        [html.escape(kind), str(len(records)), str(sum(bool(r.get("retryable")) for r in records))]
        for kind, records in sorted(by_kind.items(), key=lambda item: -len(item[1]))
    ]
    parts.append(_table(["kind", "records", "retryable"], summary, numeric={1, 2}))
    for kind, records in sorted(by_kind.items(), key=lambda item: -len(item[1])):
        rows = [
            [
                _text(r.get("id", ""), ID_CHARS),
                _text(r.get("error_type") or "", 40),
                f'<span class="excerpt">{_text(r.get("error") or "", ERROR_CHARS)}</span>',
                f'<span class="excerpt">{_text(r.get("raw") or "", RAW_CHARS)}</span>',
            ]
            for r in records[:EXAMPLES_PER_KIND]
        ]
        parts.append(
            f'<h3 class="kind">{html.escape(kind)}: {len(records)} (first {len(rows)} shown)</h3>'
        )
        parts.append(_table(["id", "type", "error (excerpt)", "model said (excerpt)"], rows, set()))
    parts.append("</section>")
    return "".join(parts)


def _slowest_section(records: Sequence[Mapping[str, Any]]) -> str:
    timed = [(latency, r) for r in records if (latency := _number(r.get("latency_s"))) is not None]
    if not timed:
        return '<section id="slowest"><h2>Slowest items</h2><p>No latencies recorded.</p></section>'
    timed.sort(key=lambda item: -item[0])
    rows = []
    for latency, r in timed[:SLOWEST]:
        score = _number(r.get("score"))
        usage = r.get("usage") if isinstance(r.get("usage"), Mapping) else {}
        tokens = _number(usage.get("prompt_tokens")) if usage else None
        rows.append(
            [
                _text(r.get("id", ""), ID_CHARS),
                f"{latency:.3f}",
                f"{score:g}" if score is not None else html.escape(str(r.get("error_kind"))),
                f"{tokens:.0f}" if tokens is not None else "",
            ]
        )
    table = _table(["id", "latency (s)", "score or failure", "prompt tokens"], rows, {1, 3})
    return f'<section id="slowest"><h2>Slowest items</h2>{table}</section>'


def render_report(records: Iterable[Mapping[str, Any]], *, source: str = "") -> str:
    """One self-contained HTML page about a batch's results.

    Args:
        records: The result lines of a ``thinking-judge batch`` output file (dicts with
            ``id``, ``score``, ``expected_score``, ``error``, ``error_kind``,
            ``latency_s``...). Error records of unreadable input count as failures.
        source: What to call the results in the title (e.g. the file's name).

    Returns:
        The HTML page: inline style and inline SVG pictures, no external URL.
    """
    records = list(records)
    scored = [r for r in records if _number(r.get("score")) is not None]
    failed = [r for r in records if _number(r.get("score")) is None]
    mean = sum(float(r["score"]) for r in scored) / len(scored) if scored else None
    title = "thinking-judge batch report" + (f": {scrub(source, limit=120)}" if source else "")
    counts = _table(
        ["records", "scored", "failed", "mean score"],
        [
            [
                str(len(records)),
                str(len(scored)),
                str(len(failed)),
                f"{mean:.3f}" if mean is not None else "-",
            ]
        ],
        numeric={0, 1, 2, 3},
    )
    body = "".join(
        [
            f"<h1>{html.escape(title)}</h1>",
            '<p class="note">Scores of the SophiaVL-R1 Thinking Reward Model: 0 for '
            "completely flawed reasoning, 1 for perfectly sound reasoning. A failed "
            "judgment has no score and is never counted as 0.</p>",
            f'<section id="counts">{counts}</section>',
            _scores_section(scored),
            _calibration_section(scored),
            _failures_section(failed),
            _slowest_section(records),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )


__all__ = ["render_report"]
