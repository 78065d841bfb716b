"""The HTML report of a scored file (``judge.batch.report``): what it shows, and what it never does."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from judge.batch.report import EXAMPLES_PER_KIND, SLOWEST, render_report


def scored(id_: str, score: float, expected: float | None = None, latency: float = 0.1) -> dict:
    return {
        "id": id_,
        "score": score,
        "expected_score": expected,
        "error": None,
        "error_kind": None,
        "latency_s": latency,
        "usage": {"prompt_tokens": 300, "completion_tokens": 2},
    }


def failed(
    id_: str, kind: str, error: str, raw: str | None = None, retryable: bool = False
) -> dict:
    return {
        "id": id_,
        "score": None,
        "error": error,
        "error_kind": kind,
        "error_type": "ScoreParseError" if kind == "parse" else "BackendTimeoutError",
        "retryable": retryable,
        "raw": raw,
        "latency_s": 0.05,
    }


class Collect(HTMLParser):
    """The page's tags and texts, checked to parse."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.texts.append(data)


def parse(page: str) -> Collect:
    collected = Collect()
    collected.feed(page)
    collected.close()
    return collected


def bar_titles(page: str) -> dict[str, int]:
    """The histogram's bars, as ``{label: count}``, read from the bars' own titles."""
    histogram = page.split('id="histogram"', 1)[1].split("</svg>", 1)[0]
    found = re.findall(r'<rect class="bar"[^>]*><title>([^<]+): (\d+)</title>', histogram)
    return {label: int(count) for label, count in found}


def test_the_histogram_counts_each_grid_score():
    page = render_report([scored("a", 1.0), scored("b", 1.0), scored("c", 0.7), scored("d", 0.0)])
    bars = bar_titles(page)
    assert list(bars) == ["0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1"]
    assert bars == {**dict.fromkeys(bars, 0), "1": 2, "0.7": 1, "0": 1}
    counts = page.split('id="counts"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r'<td class="num">([^<]*)</td>', counts) == ["4", "4", "0", "0.675"]


def test_calibration_per_greedy_score_when_expected_scores_are_present():
    page = render_report(
        [scored("a", 1.0, 0.6), scored("b", 1.0, 0.8), scored("c", 0.3, 0.35), scored("d", 0.5)]
    )
    section = page.split('id="calibration"', 1)[1].split("</section>", 1)[0]
    rows = re.findall(
        r"<tr><td[^>]*>([^<]*)</td><td[^>]*>([^<]*)</td><td[^>]*>([^<]*)</td>", section
    )
    assert rows == [("0.3", "1", "0.350"), ("1", "2", "0.700")]
    assert section.count('class="point"') == 3


def test_without_expected_scores_the_report_says_how_to_get_them():
    section = render_report([scored("a", 0.4)]).split('id="calibration"', 1)[1]
    assert "--expected-score" in section.split("</section>", 1)[0]
    assert 'class="point"' not in section


def test_failures_by_kind_with_a_bounded_number_of_examples():
    records = [failed(f"p{i}", "parse", f"not a score: {i}") for i in range(5)]
    records += [failed("t0", "timeout", "took too long after 3 attempts", retryable=True)]
    page = render_report([scored("a", 0.5), *records])
    section = page.split('id="failures"', 1)[1].split("</section>", 1)[0]
    summary = re.findall(
        r"<tr><td>(\w+)</td><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)", section
    )
    assert summary == [("parse", "5", "0"), ("timeout", "1", "1")]
    assert [f"p{i}" for i in range(EXAMPLES_PER_KIND)] == re.findall(r"<td>(p\d)</td>", section)
    assert "t0" in section


def test_texts_are_escaped_scrubbed_and_cut():
    image = "data:image/png;base64," + "iVBORw0KGgo" * 500
    error = f"the host said: <script>alert(1)</script> {image} " + "x " * 2000
    page = render_report([failed("<b>id</b>", "server", error, raw="<think>" + "y" * 5000)])
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "&lt;b&gt;id&lt;/b&gt;" in page
    assert "iVBORw0KGgo" not in page
    assert "[base64 omitted]" in page
    assert len(page) < 12_000  # a few bounded excerpts, never the whole texts
    assert "y" * 100 not in page


def test_the_slowest_items_first_and_bounded():
    records = [scored(f"r{i}", 0.5, latency=i / 10) for i in range(SLOWEST + 5)]
    section = render_report(records).split('id="slowest"', 1)[1].split("</section>", 1)[0]
    ids = re.findall(r"<tr><td>(r\d+)</td>", section)
    assert ids == [f"r{i}" for i in range(SLOWEST + 4, 4, -1)]


def test_the_page_is_self_contained_and_parses():
    page = render_report([scored("a", 1.0, 0.7), failed("b", "parse", "no")], source="out.jsonl")
    collected = parse(page)
    tags = [tag for tag, _ in collected.tags]
    assert tags.count("svg") == 3  # the two histograms and the scatter plot
    assert "script" not in tags
    for tag, attrs in collected.tags:
        for name in ("src", "href"):
            assert name not in attrs, (tag, attrs)
    assert not re.search(r"https?://|url\(", page)
    assert "<title>thinking-judge batch report: out.jsonl</title>" in page


def test_an_empty_file_makes_a_report_that_says_so():
    page = render_report([])
    assert re.findall(r'<td class="num">([^<]*)</td>', page.split('id="counts"', 1)[1])[:4] == [
        "0",
        "0",
        "0",
        "-",
    ]
    assert "No latencies recorded." in page


def test_the_report_renders_in_a_browser_with_its_histogram(tmp_path):
    """Chromium at 1280 px: a page that is not blank, and the histogram's green bars drawn."""
    from browser import chromium, non_white_share, pixels_near, screenshot

    chromium()  # skips without one, unless THINKING_JUDGE_REQUIRE_BROWSER=1
    records = [scored(f"r{i}", [1.0, 0.7, 0.7, 0.3][i % 4], 0.5 + i / 100) for i in range(40)]
    records.append(failed("x", "parse", "no score in the model output 'blank'"))
    page = tmp_path / "report.html"
    page.write_text(render_report(records, source="scores.jsonl"), encoding="utf-8")
    shot = screenshot(page, tmp_path / "report.png")
    assert non_white_share(shot) > 0.03
    assert pixels_near(shot, "#2da44e") > 2_000  # the score histogram's bars
    assert pixels_near(shot, "#0969da") > 1_000  # the expected scores' bars and points
