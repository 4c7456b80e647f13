"""The report opened in a real headless browser: Debian's chromium, driven by playwright.

playwright is only the driver here; it never downloads a browser (``executable_path`` points at
the system chromium, which ``.ci/run`` installs).  Locally, without chromium, the test is skipped;
under CI (``CI`` set) a missing browser or driver is a failure, so CI cannot pass without it.

A screenshot of the page is written to ``reports/report-browser.png`` as an artifact.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from gradcheck import report
from tests.gradcheck.report.conftest import N_TABLE_ROWS

REPO = Path(__file__).resolve().parents[3]
ARTIFACT = REPO / "reports" / "report-browser.png"
#: The README's picture of the overview (committed); rewritten by the test only when asked.
README_SHOT = REPO / "docs" / "report-overview.png"
#: Flags for a root user on a machine without network or GPU (no sandbox, no background traffic).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    path = os.environ.get("GRADCHECK_CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("no chromium on this machine (apt-get install chromium); CI requires it")
    return path


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed: it is in the [test] extra")
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    return sync_playwright


@pytest.fixture
def page_file(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    hostile = copy.deepcopy(rows[0])
    hostile["test"] = 'tests/x.py::test[<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">]'
    doc = report.session_document([*rows, hostile], title="browser test")
    return report.write_html(doc, tmp_path / "report.html")


def test_report_in_headless_chromium(page_file: Path) -> None:
    executable = _chromium()
    sync_playwright = _playwright()
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
            page.on("request", lambda r: errors.append(f"network request: {r.url}")
                    if not r.url.startswith(("file:", "data:", "about:")) else None)
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")

            # Every tensor row of the fixture, plus the hostile copy of the passing check (2 rows).
            rows = page.locator("#agreement tbody tr")
            assert rows.count() == N_TABLE_ROWS + 2
            # Escaped, not executed: the test id is shown as text.
            assert page.evaluate("window.__pwned") is None
            assert page.get_by_text("<script>window.__pwned=1</script>", exact=False).count() >= 1

            # JavaScript enhancement works: filter by verdict, then sort by a numeric column.
            assert page.locator("#controls").is_visible()
            page.select_option("#verdict-filter", "fail")
            visible = [r for r in rows.all() if r.is_visible()]
            assert visible and all(r.get_attribute("data-verdict") == "fail" for r in visible)
            assert page.locator("#shown").inner_text().startswith(f"showing {len(visible)} of")
            page.select_option("#verdict-filter", "")
            header = page.locator("#agreement thead th").nth(6)
            header.locator("button").click()
            assert header.get_attribute("aria-sort") == "ascending"

            # A failing row's drill-down opens: by its link in the table, and by the keyboard.
            drill = page.locator("details.drill").first
            assert drill.get_attribute("open") is None
            page.locator("#agreement tbody tr[data-verdict=fail] a").first.click()
            # The link opens it from a hashchange handler, which runs after the click returns.
            page.wait_for_function("document.querySelector('details.drill').open", timeout=5000)
            assert drill.get_attribute("open") is not None
            assert drill.locator(".diagnosis").is_visible()
            assert drill.locator("table.entries tbody tr").count() >= 1
            assert drill.locator("figure.heatmap svg").is_visible()
            drill.locator("summary").focus()
            page.keyboard.press("Enter")
            assert drill.get_attribute("open") is None
            page.keyboard.press("Enter")
            assert drill.get_attribute("open") is not None

            # A gradient-flow plot is drawn and visible, with a non-trivial size.
            plot = page.locator("figure.flow svg").first
            plot.scroll_into_view_if_needed()
            assert plot.is_visible()
            box = plot.bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 100

            # Dark mode: the page follows the user's colour scheme.
            light = page.evaluate("getComputedStyle(document.body).backgroundColor")
            page.emulate_media(color_scheme="dark")
            dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert light != dark

            ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
            page.emulate_media(color_scheme="light")
            page.screenshot(path=str(ARTIFACT), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert ARTIFACT.stat().st_size > 10_000


LONG_ID = "tests/test_" + "very_long_parametrised_name_" * 10 + ".py::test_layer[" + "x" * 20 + "]"


@pytest.fixture
def grouped_file(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    """Two test modules (one failing, one passing) and a 300-character test id."""
    extra = copy.deepcopy(rows[0])
    extra["test"] = "tests/test_more.py::test_ok_again"
    long = copy.deepcopy(rows[1])
    long["test"] = LONG_ID[:300]
    assert len(long["test"]) == 300
    doc = report.session_document([*rows, extra, long], title="grouped")
    return report.write_html(doc, tmp_path / "grouped.html")


def _visible_in(page: Any, locator: Any, width: int) -> bool:
    box = locator.bounding_box()
    return bool(box and box["width"] > 0 and box["x"] >= 0 and box["x"] + box["width"] <= width + 1)


@pytest.mark.parametrize("width", [1400, 390])
def test_overview_groups_toggles_and_long_ids(grouped_file: Path, width: int) -> None:
    executable = _chromium()
    sync_playwright = _playwright()
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("request", lambda r: errors.append(f"network request: {r.url}")
                    if not r.url.startswith(("file:", "data:", "about:")) else None)
            page.goto(grouped_file.as_uri())
            page.wait_for_load_state("load")

            # The overview: counts first, then what needs attention, before any table.
            tiles = page.locator("#overview .tiles").inner_text()
            assert "6 checks" in tiles.replace("\n", " ") and "2 fail" in tiles.replace("\n", " ")
            attention = page.locator("ol.attention li")
            assert attention.count() == 3  # the two failing checks and the error
            assert page.locator("#overview").bounding_box()["y"] < page.locator("#agreement").bounding_box()["y"]

            # Groups: the failing module first and open, the all-pass module closed.
            groups = page.locator("details.group")
            assert groups.count() == 4
            first, last = groups.first, groups.last
            assert first.get_attribute("open") is not None and last.get_attribute("open") is None
            assert "fail" in first.locator("summary").inner_text()
            # failures before passes inside a group
            verdicts = [r.get_attribute("data-verdict") for r in first.locator("tbody tr").all()]
            assert verdicts.index("fail") < verdicts.index("pass") if "pass" in verdicts else True
            # collapsing a group hides its rows
            row = first.locator("tbody tr").first
            assert row.is_visible()
            first.locator("summary").click()
            assert first.get_attribute("open") is None and not row.is_visible()
            first.locator("summary").click()
            assert row.is_visible()

            # Outcome toggles: unchecking "pass" hides every pass row, and says so.
            box = page.locator("#toggles input[data-outcome=pass]")
            assert box.is_visible()
            box.uncheck()
            shown = [r for r in page.locator("table.agreement tbody tr[data-verdict=pass]").all()
                     if r.is_visible()]
            assert shown == []
            assert page.locator("table.agreement tbody tr[data-verdict=fail]").first.is_visible()
            box.check()

            # The 300-character id: its row's verdict and blame stay on screen, no sideways scroll.
            long_row = page.locator("table.agreement tbody tr", has_text="very_long").first
            long_row.scroll_into_view_if_needed()
            verdict = long_row.locator("td.verdict")
            blame = long_row.locator("td").nth(11)
            assert verdict.is_visible() and blame.is_visible()
            assert _visible_in(page, verdict, width) and _visible_in(page, blame, width)
            assert "sign flip" in blame.inner_text()
            assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
            title = long_row.locator("td").first.get_attribute("title")
            assert title == LONG_ID[:300]  # the whole id on hover

            # Dark mode follows the user's colour scheme; screenshots as artifacts.
            ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(ARTIFACT.with_name(f"report-overview-{width}.png")))
            light = page.evaluate("getComputedStyle(document.body).backgroundColor")
            page.emulate_media(color_scheme="dark")
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") != light
            page.screenshot(path=str(ARTIFACT.with_name(f"report-overview-{width}-dark.png")))
            if width == 1400 and os.environ.get("GRADCHECK_README_SHOT"):
                page.emulate_media(color_scheme="light")
                page.screenshot(path=str(README_SHOT))
        finally:
            browser.close()
    assert errors == []
