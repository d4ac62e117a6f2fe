"""The generated report.html as a reader sees it: rendered in Chromium at a desktop's and a
phone's width, no two pieces of text overlap, every figure loads and fits, nothing sticks out
sideways. (Text inside the figures is checked at its drawn size by test_figures.py.)"""

import pytest

from conftest import quick_config
from digitlab.analysis.report import write_report
from digitlab.engine.train import train

pytestmark = pytest.mark.slow  # a real run, its whole report and a browser

WIDTHS = [pytest.param(1000, id="desktop"), pytest.param(390, id="phone")]

# every shown text node's boxes; pairs of boxes of different nodes that overlap by over 1 px
TEXT_OVERLAPS = """() => {
  const boxes = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = 0; walker.nextNode(); node++) {
    const text = walker.currentNode.textContent.trim();
    if (!text || !walker.currentNode.parentElement.checkVisibility()) continue;  // e.g. folded away
    const range = document.createRange();
    range.selectNodeContents(walker.currentNode);
    for (const r of range.getClientRects())
      if (r.width > 0 && r.height > 0) boxes.push({ node, text: text.slice(0, 40), r });
  }
  const overlaps = [];
  for (let a = 0; a < boxes.length; a++)
    for (let b = a + 1; b < boxes.length; b++) {
      const p = boxes[a], q = boxes[b];
      if (p.node === q.node) continue;
      const w = Math.min(p.r.right, q.r.right) - Math.max(p.r.left, q.r.left);
      const h = Math.min(p.r.bottom, q.r.bottom) - Math.max(p.r.top, q.r.top);
      if (w > 1 && h > 1) overlaps.push([p.text, q.text]);
    }
  return { texts: boxes.length, overlaps };
}"""

FIGURES = """() => [...document.images].map((img) => {
  const r = img.getBoundingClientRect();
  return { alt: img.alt, natural: img.naturalWidth, left: r.left, right: r.right, width: r.width };
})"""


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    """The report of a real three-epoch run: curves, confusion, mistakes, embedding map."""
    result = train(quick_config(tmp_path_factory.mktemp("report"), epochs=3), quiet=True)
    html_path, _ = write_report(result.run_dir, embedded=300)
    return html_path


@pytest.mark.parametrize("width", WIDTHS)
def test_the_report_reads_without_overlaps_at_desktop_and_phone_width(browser, report_html, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.goto(report_html.as_uri())
        for opened in (False, True):  # the folded settings too, once unfolded
            if opened:
                page.evaluate("document.querySelectorAll('details').forEach((d) => (d.open = true))")
            found = page.evaluate(TEXT_OVERLAPS)
            assert found["texts"] > 100 and found["overlaps"] == [], found["overlaps"][:5]
            figures = page.evaluate(FIGURES)
            assert len(figures) >= 5
            for figure in figures:
                assert figure["natural"] > 0, f"{figure['alt']}: did not load"
                assert figure["left"] >= 0 and figure["right"] <= width, f"{figure['alt']}: sticks out"
            assert page.evaluate("document.documentElement.scrollWidth") <= width
    finally:
        page.close()
