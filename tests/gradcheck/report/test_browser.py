"""The report opened in a real headless browser: Debian's chromium, driven by playwright.

playwright is only the driver here; it never downloads a browser (``executable_path`` points at
the system chromium, which ``.ci/run`` installs).  Locally, without chromium, the test is skipped;
under CI (``CI`` set) a missing browser or driver is a failure, so CI cannot pass without it.

Screenshots are written to ``reports/`` as artifacts: ``report-browser.png`` (the whole page),
``report-overview-{1400,390}[-dark].png`` (a page with a 300-character test id) and
``report-demo-{1400,1400-dark,390}.png`` (the realistic session of :mod:`tests.gradcheck.report.demo`).
With ``GRADCHECK_README_SHOT=1`` the desktop view of the demo also becomes the README's picture,
``docs/report-overview.png``.
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


#: 300-character test ids: one long in its module's name, one in its parameters.
LONG_IDS = [("tests/test_" + "very_long_parametrised_name_" * 10 + ".py::test_layer[" + "x" * 20 + "]")[:300],
            ("tests/test_layers.py::test_layer[" + "very_long_parameter_" * 14 + "]")[:300]]


@pytest.fixture
def grouped_file(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    """Two test modules (one failing, one passing) and two failing checks with 300-character ids."""
    extra = copy.deepcopy(rows[0])
    extra["test"] = "tests/test_more.py::test_ok_again"
    longs = []
    for long_id in LONG_IDS:
        longs.append({**copy.deepcopy(rows[1]), "test": long_id})
        assert len(long_id) == 300
    doc = report.session_document([*rows, extra, *longs], title="grouped")
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
            assert "7 checks" in tiles.replace("\n", " ") and "3 fail" in tiles.replace("\n", " ")
            attention = page.locator("ol.attention li")
            assert attention.count() == 4  # the three failing checks and the error
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

            # The 300-character ids: their rows' verdict and blame stay on screen, no sideways scroll.
            for long_id in LONG_IDS:
                long_row = page.locator(f'table.agreement tbody tr:has(td[title="{long_id}"])').first
                long_row.scroll_into_view_if_needed()
                verdict = long_row.locator("td.verdict")
                blame = long_row.locator("td").nth(11)
                assert verdict.is_visible() and blame.is_visible()
                assert _visible_in(page, verdict, width) and _visible_in(page, blame, width)
                assert verdict.inner_text() == "fail" and "sign flip" in blame.inner_text()
                test_cell = long_row.locator("td").first
                assert _visible_in(page, test_cell, width)  # cut, not spilling out
                assert test_cell.get_attribute("title") == long_id  # the whole id on hover
            assert page.evaluate("document.documentElement.scrollWidth") <= width + 1

            # Dark mode follows the user's colour scheme; screenshots as artifacts.
            ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(ARTIFACT.with_name(f"report-overview-{width}.png")))
            light = page.evaluate("getComputedStyle(document.body).backgroundColor")
            page.emulate_media(color_scheme="dark")
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") != light
            page.screenshot(path=str(ARTIFACT.with_name(f"report-overview-{width}-dark.png")))
        finally:
            browser.close()
    assert errors == []


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The realistic demo session (real checks with planted bugs, flows through time and depth)."""
    from tests.gradcheck.report.demo import demo_document

    return report.write_html(demo_document(), tmp_path_factory.mktemp("demo") / "demo.html")


def _watch(page: Any, errors: list[str]) -> None:
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("request", lambda r: errors.append(f"network request: {r.url}")
            if not r.url.startswith(("file:", "data:", "about:")) else None)


def test_demo_report_drill_downs_plots_and_screenshots(demo_file: Path) -> None:
    executable = _chromium()
    sync_playwright = _playwright()
    errors: list[str] = []
    shots = {name: ARTIFACT.with_name(f"report-demo-{name}.png") for name in ("1400", "1400-dark", "390")}
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            _watch(page, errors)
            page.goto(demo_file.as_uri())
            page.wait_for_load_state("load")
            page.screenshot(path=str(shots["1400"]))
            if os.environ.get("GRADCHECK_README_SHOT"):
                shutil.copyfile(shots["1400"], README_SHOT)
            page.emulate_media(color_scheme="dark")
            page.screenshot(path=str(shots["1400-dark"]))
            page.emulate_media(color_scheme="light")

            # The contents link to a failure's drill-down: following it opens the drill-down.
            link = page.locator("#toc .toc-fails a", has_text="ElmanRNN").first
            target = page.locator(f"details#{link.get_attribute('href')[1:]}")
            assert target.get_attribute("open") is None
            link.click()
            page.wait_for_function(f"document.getElementById({link.get_attribute('href')[1:]!r}).open",
                                   timeout=5000)
            # the sequence's whole error map (one small grid per time step) and its error by step
            errmap = target.locator("svg.errmap")
            errmap.scroll_into_view_if_needed()
            assert errmap.is_visible() and errmap.locator("text.panel").count() >= 2
            assert target.locator("figure.steps svg").is_visible()
            assert "What to do" in target.inner_text() and "seed=0" in target.inner_text()

            # The MLP's gradient flow through depth is drawn.
            mlp = page.locator("figure.flow", has_text="MLP depth 3")
            mlp.scroll_into_view_if_needed()
            box = mlp.locator("svg").bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 100

            # A screened tensor says so in its row; a 1,200-entry map is a picture (CSP: img-src data:).
            assert page.locator("table.agreement td.screened", has_text="screened: 3 probes").count() == 1
            wide = page.locator("details.drill", has_text="Dense(40→30)")
            wide.locator("summary").click()
            picture = wide.locator("svg.errmap image")
            picture.scroll_into_view_if_needed()
            assert picture.is_visible() and (picture.bounding_box() or {}).get("width", 0) > 100
            assert "hand: columns 5–7" in page.locator("table.agreement tr", has_text="Dense(40→30)").first.inner_text()

            phone = browser.new_page(viewport={"width": 390, "height": 844})
            _watch(phone, errors)
            phone.goto(demo_file.as_uri())
            phone.wait_for_load_state("load")
            assert phone.evaluate("document.documentElement.scrollWidth") <= 391
            for cell in phone.locator("details.group[open] table.agreement tbody tr td.verdict").all()[:5]:
                assert _visible_in(phone, cell, 390)
            phone.screenshot(path=str(shots["390"]))

            # Without JavaScript the page is whole: groups and drill-downs open, the script's
            # controls stay hidden.
            plain = browser.new_page(java_script_enabled=False, viewport={"width": 1280, "height": 900})
            plain.goto(demo_file.as_uri())
            assert not plain.locator("#controls").is_visible()
            assert plain.locator("details.group[open] tbody tr").first.is_visible()
            drill = plain.locator("details.drill").first
            drill.locator("summary").click()
            assert drill.get_attribute("open") is not None and drill.locator("svg.errmap").is_visible()
        finally:
            browser.close()
    assert errors == []
    for path in shots.values():
        assert 10_000 < path.stat().st_size < 400_000, (path, path.stat().st_size)
