"""The docs site as a reader sees it: built, then laid out by headless chromium at 1280 px.

Every page of the built site is loaded, one after another, into a 1280 px wide frame of
one probe page; a script measures, after layout, each code block, table, image and
picture of the page's content and reports any that

* reaches past the window (the reader cannot see its right part), or
* is wider than its own box, so part of it is hidden sideways (a table or code block
  whose right columns or line ends only a sideways scroll would show),

and whether the page scrolls sideways at all. The test fails on any such finding, on a
page that did not load, and on the probe seeing fewer pages than the site has.
Pictures are checked the same way: ``benchmarks/run.py --plot``'s chart is rendered
and looked at (non-blank, its bars drawn).

Needs Debian's chromium (``apt-get install -y chromium``): without it the test skips,
unless ``THINKING_JUDGE_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from browser import WIDTH, chromium, dump_dom, non_white_share, pixels_near, screenshot

ROOT = Path(__file__).resolve().parents[2]

PROBE = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="frame" style="width:%(width)dpx;height:2000px;border:0"></iframe>
<pre id="out"></pre>
<script>
const pages = %(pages)s;
const results = [];
const boxes = ".md-content pre, .md-content .md-typeset__scrollwrap, .md-content table, "
  + ".md-content img, .md-content svg, .md-content .highlight, .md-content .admonition";
function describe(el) {
  const name = el.tagName.toLowerCase() + (el.classList.length ? "." + el.classList[0] : "");
  return name + ": " + (el.textContent || el.getAttribute("src") || "").trim().slice(0, 80);
}
function measure(doc) {
  const width = doc.documentElement.clientWidth;
  const problems = [];
  for (const el of doc.querySelectorAll(boxes)) {
    const box = el.getBoundingClientRect();
    if (box.width === 0) continue;
    if (box.right > width + 1) {
      problems.push({what: describe(el), why: "reaches past the window", right: box.right, width});
    } else if (el.scrollWidth > el.clientWidth + 1
               && getComputedStyle(el).overflowX !== "visible") {
      problems.push({what: describe(el), why: "hidden sideways",
                     content: el.scrollWidth, box: el.clientWidth});
    }
  }
  if (doc.documentElement.scrollWidth > width + 1) {
    problems.push({what: "the page", why: "scrolls sideways",
                   content: doc.documentElement.scrollWidth, box: width});
  }
  const content = doc.querySelector(".md-content");
  return {title: doc.title, text: content ? content.innerText.length : 0, problems};
}
const frame = document.getElementById("frame");
let i = 0;
frame.onload = () => setTimeout(() => {
  try { results.push({page: pages[i], ...measure(frame.contentDocument)}); }
  catch (error) { results.push({page: pages[i], error: String(error)}); }
  i += 1;
  if (i < pages.length) { frame.src = pages[i]; }
  else { document.getElementById("out").textContent = "PROBE" + JSON.stringify(results); }
}, 200);
frame.src = pages[0];
</script></body></html>
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built as CI builds it (``mkdocs build --strict``)."""
    chromium()  # skip before the build when there is no browser
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    folder = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def site_pages(site: Path) -> list[str]:
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("index.html"))
    return [p for p in pages if not p.startswith(("search/", "assets/"))]


def probe(site: Path, pages: list[str]) -> list[dict]:
    page = site / "__probe.html"
    page.write_text(PROBE % {"width": WIDTH, "pages": json.dumps(pages)}, encoding="utf-8")
    dom = dump_dom(page, budget_ms=2_000 * len(pages) + 10_000)
    found = [line for line in dom.splitlines() if "PROBE[" in line]
    assert found, f"the probe did not finish:\n{dom[-2000:]}"
    return json.loads(found[-1].split("PROBE", 1)[1].split("</pre>", 1)[0])


def test_every_page_shows_all_its_content_at_1280_px(site: Path):
    pages = site_pages(site)
    assert len(pages) >= 15  # every page of the nav
    results = probe(site, pages)
    assert [r["page"] for r in results] == pages
    problems = []
    for result in results:
        print(f"{result['page']}: {result.get('title')!r}, {result.get('text')} characters")
        if "error" in result or not result["title"] or result["text"] < 200:
            problems.append(f"{result['page']} did not load: {result}")
        for problem in result.get("problems", []):
            problems.append(f"{result['page']}: {problem}")
    assert not problems, "\n".join(problems)


def test_the_probe_sees_a_table_too_wide_for_the_page(site: Path):
    """The measure itself: a page with a 30-column table is reported, not passed."""
    wide = site / "wide" / "index.html"  # as deep as faq/: its links and assets resolve
    wide.parent.mkdir()
    cells = "".join(f"<th>column number {i}</th>" for i in range(30))
    page = (site / "faq" / "index.html").read_text(encoding="utf-8")
    start = page.index('<article class="md-content__inner md-typeset">') + len(
        '<article class="md-content__inner md-typeset">'
    )
    page = (
        page[:start] + f'<div class="md-typeset__scrollwrap"><div class="md-typeset__table"><table>'
        f"<tr>{cells}</tr></table></div></div>" + page[start:]
    )
    wide.write_text(page, encoding="utf-8")
    (result,) = probe(site, ["wide/index.html"])
    assert "hidden sideways" in [p["why"] for p in result["problems"]]
    assert result["problems"][0]["what"].startswith("div.md-typeset__scrollwrap: column number 0")


def test_the_benchmark_plot_renders(tmp_path: Path):
    chromium()
    pytest.importorskip("matplotlib", reason="the bench extra is not installed")
    png = tmp_path / "benchmarks.png"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--sections",
            "overhead",
            "--quick",
            "--n",
            "64",  # a multiple of the image rows' group of 8
            "--repeat",
            "1",
            "--plot",
            str(png),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    page = tmp_path / "plot.html"
    page.write_text(
        f'<!DOCTYPE html><html><body style="margin:0;background:#fff">'
        f'<img src="{png.name}" style="max-width:{WIDTH}px"></body></html>',
        encoding="utf-8",
    )
    shot = screenshot(page, tmp_path / "shot.png", height=900)
    assert non_white_share(shot) > 0.02  # not blank
    # the rows' bars: green where the goal is met, red where not
    assert pixels_near(shot, "#2e7d32") + pixels_near(shot, "#c62828") > 500
