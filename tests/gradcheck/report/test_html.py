"""The HTML page: table rows, drill-downs, escaping, unique SVG ids, self-containment, size."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from gradcheck import report
from gradcheck.report.html import MAX_DRILLDOWNS
from gradcheck.report.plots import heatmap_svg, prefix_svg_ids
from tests.gradcheck.report.conftest import N_TABLE_ROWS


class Page(HTMLParser):
    """What the tests look at: every tag, the agreement table's rows and cells, all text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[list[str]] = []
        #: the attributes of each cell of :attr:`rows` (a cell's ``title`` holds its whole text)
        self.cells: list[list[dict[str, str | None]]] = []
        self.text: list[str] = []
        self._table = self._tbody = 0
        self._cell: list[str] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table" and "agreement" in (a.get("class") or "").split():
            self._table = 1
        elif self._table and tag == "tbody":
            self._tbody = 1
        elif self._tbody and tag == "tr":
            self.rows.append([])
            self.cells.append([])
        elif self._tbody and tag == "td":
            self._cell = []
            self.cells[-1].append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tbody":
            self._tbody = 0
        elif tag == "table":
            self._table = 0

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def attrs(self, name: str) -> list[str]:
        return [a[name] or "" for _, a in self.tags if name in a]

    def count(self, tag: str, **attrs: str) -> int:
        return sum(1 for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items()))


@pytest.fixture
def html(rows: list[dict[str, Any]]) -> str:
    return report.render_html(report.session_document(rows, title="unit"))


def test_one_table_row_per_check_and_tensor(html: str) -> None:
    page = Page(html)
    assert len(page.rows) == N_TABLE_ROWS
    assert all(len(cells) == 12 for cells in page.rows)
    by_leaf = {(cells[1], cells[2]): cells for cells in page.rows}
    bug_w = by_leaf[("tanh/sign-bug", "W")]
    assert bug_w[0] == "test_bug"  # its group names the module; the whole id is the title
    bug_at = next(i for i, cells in enumerate(page.rows) if cells[:3] == bug_w[:3])
    assert page.cells[bug_at][0]["title"] == "tests/test_layers.py::test_bug"
    assert (bug_w[3], bug_w[4], bug_w[10], bug_w[11]) == ("4×3", "float64", "fail", "hand: sign flip")
    assert bug_w[5] == "2" and bug_w[6] == "—" and bug_w[8].startswith("rtol ")
    assert by_leaf[("tanh/sign-bug", "b")][10] == "pass"
    ok_w = by_leaf[("tanh/ok", "W")]
    assert float(ok_w[9]) > 0 and bug_w[9] == "—"  # a passing tensor states its detection power
    assert by_leaf[("tanh/ok", "b")][3] == "3"
    error = next(cells for cells in page.rows if cells[1] == "raises")
    assert error[2] == "UserCodeError: division by zero" and error[10] == "error"


def test_headers_are_sort_buttons_with_aria_sort(html: str) -> None:
    page = Page(html)
    heads = [a for t, a in page.tags if t == "th" and a.get("data-kind")]
    n_groups = page.count("details", **{"class": "group"})
    assert n_groups == 2  # tests/test_layers.py and tests/test_rnn.py
    assert len(heads) == 12 * n_groups and all(a.get("aria-sort") == "none" for a in heads)
    assert page.count("button", type="button") == 12 * n_groups
    (controls,) = [a for t, a in page.tags if t == "div" and a.get("id") == "controls"]
    assert "hidden" in controls  # the filter controls appear only when the script runs


def test_summary_header(html: str) -> None:
    text = " ".join(Page(html).text)
    assert "4 checks" in text and "2 pass" in text and "1 fail" in text and "1 error" in text
    for word in ("numpy", "jax", "platform", "seeds", "modes", "float64", "auto:full", "numeric"):
        assert word in text


def test_failure_drill_downs(html: str) -> None:
    page = Page(html)
    details = [a["id"] for t, a in page.tags if t == "details" and a.get("class", "").startswith("drill")]
    assert details == ["tanh-sign-bug", "raises"]  # only what did not pass
    assert {"#tanh-sign-bug", "#raises"} <= set(page.attrs("href"))
    text = " ".join(page.text)
    assert "sign flip" in text and "Worst 5 entries" in text
    # the failing W (12 entries) carries its whole error map, drawn cell by cell with tooltips
    assert "of every entry of W (4×3; rows down (axis 0), columns across (axis 1))" in text
    assert "grey ones were not measured" in text
    assert page.count("svg", **{"class": "heat errmap", "role": "img"}) == 1
    assert page.count("rect") >= 12
    # the hint lines of the terminal message
    assert "What to do: Check the sign of the W term in the backward" in text.replace("  ", " ")
    assert "the hand-derived backward (the references agree" in text and "seed=0" in text


def test_without_an_error_map_the_worst_entries_are_placed_on_the_grid(
        rows: list[dict[str, Any]]) -> None:
    for leaf in rows[1]["leaves"]:
        leaf.pop("error_map", None)  # a document written before error maps existed
    text = " ".join(Page(report.render_html(report.session_document(rows))).text)
    assert "worst 5 entries only" in text


def test_heatmap_places_the_worst_entries_on_the_grid(failing: dict[str, Any]) -> None:
    leaf = failing["leaves"][0]
    svg = heatmap_svg(leaf)
    assert svg is not None
    cells = re.findall(r'<rect x="([\d.]+)" y="([\d.]+)"', svg)
    assert len(cells) == len(leaf["worst"])
    i, j = leaf["worst"][0]["index"]
    assert (str(j * 24), str(i * 24)) in cells
    assert heatmap_svg(failing["leaves"][1]) is None  # b is 1-D
    assert heatmap_svg({**leaf, "worst": []}) is None


def test_flow_plots_are_inline_svg_with_unique_ids(rows: list[dict[str, Any]]) -> None:
    rows.append({**rows[3], "test": "tests/test_rnn.py::test_again"})  # the same plots twice
    html = report.render_html(report.session_document(rows))
    page = Page(html)
    assert page.count("svg", **{"class": "plot", "role": "img"}) == 4
    ids = page.attrs("id")
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    urls = re.findall(r"url\(#([^)]+)\)", html)
    hrefs = [h[1:] for h in page.attrs("href") + page.attrs("xlink:href") if h.startswith("#")]
    assert urls and any(h.startswith("flow") for h in hrefs)
    assert set(urls + hrefs) <= set(ids)  # every reference resolves
    assert "η^(T−1−t) bound" in html and "vanishing" in html and "exploding" in html


def test_prefix_svg_ids_rewrites_definitions_and_references() -> None:
    svg = ('<svg><defs><path id="m1"/><clipPath id="clip0"/></defs><g clip-path="url(#clip0)">'
           '<use xlink:href="#m1"/><use href="#m1"/><a href="#elsewhere"/></g></svg>')
    out = prefix_svg_ids(svg, "p7-")
    assert 'id="p7-m1"' in out and 'id="p7-clip0"' in out and "url(#p7-clip0)" in out
    assert 'xlink:href="#p7-m1"' in out and 'href="#p7-m1"' in out
    assert 'href="#elsewhere"' in out  # not defined here: left alone


HOSTILE = ['<script>alert("x")</script>', "<img src=x onerror=alert(1)>", '"><svg onload=alert(2)>']


def test_user_strings_are_escaped(rows: list[dict[str, Any]]) -> None:
    for i, row in enumerate(rows):
        row["test"] = f"tests/test_{i}.py::test[{HOSTILE[i % 3]}]"
    rows[1]["name"] = HOSTILE[1]
    rows[1]["leaves"][0]["name"] = HOSTILE[2]
    rows[1]["leaves"][0]["notes"] = [HOSTILE[0]]
    rows[1]["leaves"][0]["diagnosis"]["summary"] = HOSTILE[1]
    rows[1]["falsifying"] = HOSTILE[0]
    rows[2]["error"] = HOSTILE[1]
    rows[3]["flows"][0]["reasons"] = [HOSTILE[2]]
    doc = report.session_document(rows, environment={"note": HOSTILE[0]}, title=HOSTILE[0])
    page = Page(report.render_html(doc))
    tags = [t for t, _ in page.tags]
    assert tags.count("script") == 1 and "img" not in tags  # only our own script
    assert not [a for _, a in page.tags if any(k.startswith("on") for k in a)]
    assert [t for t, a in page.tags if t == "svg" and "class" not in a] == []  # no injected <svg>
    text = "".join(page.text)
    for hostile in HOSTILE:
        assert hostile in text  # shown as text


def test_the_page_is_self_contained(html: str) -> None:
    page = Page(html)
    assert page.count("link") == 0 and page.count("img") == 0 and page.count("iframe") == 0
    assert not [a for t, a in page.tags if t == "script" and "src" in a]
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "prefers-color-scheme: dark" in html


def test_render_accepts_audit_and_result_documents(passing: dict[str, Any]) -> None:
    audit = {"schema": "gradcheck.audit/1", "modules": ["m"], "seconds": 1, "counts": {"pass": 1},
             "results": [passing]}
    assert len(Page(report.render_html(audit)).rows) == 2
    assert len(Page(report.render_html(passing)).rows) == 2


def test_non_finite_errors_are_shown_and_sort_first(passing: dict[str, Any]) -> None:
    row = copy.deepcopy(passing)
    row["leaves"][0]["hand_vs_numeric"]["max_rel_err"] = "nan"
    html = report.render_html(report.session_document([row]))
    assert 'data-v="Infinity"' in html and ">nan<" in html


def test_sparse_rows_still_render() -> None:
    rows = [{"verdict": "no result", "test": "tests/test_x.py::test_crashed[1]"},
            {"name": "bare", "verdict": "fail", "leaves": [{"name": "W", "verdict": "fail"}]}]
    page = Page(report.render_html(report.session_document(rows)))
    assert [(c[1], c[2], c[3], c[10]) for c in page.rows] == [
        ("tests/test_x.py::test_crashed[1]", "no result", "—", "no result"), ("bare", "W", "—", "fail")]
    assert [a["id"] for t, a in page.tags if t == "details" and "drill" in (a.get("class") or "")] == [
        "tests-test_x-py-test_crashed-1", "bare"]
    assert "No gradient result was recorded" in " ".join(page.text)


def test_size_for_2000_checks(passing: dict[str, Any], failing: dict[str, Any], tmp_path: Path) -> None:
    mixed = [{**(failing if i % 10 == 0 else passing), "test": f"tests/test_m.py::test_layer[{i}]"}
             for i in range(2000)]
    path = report.write_html(report.session_document(mixed), tmp_path / "mixed.html")
    size = path.stat().st_size
    assert len(Page(path.read_text()).rows) == 4000
    assert size < 3_400_000, size  # 3.2 MB measured: 4,000 rows in 1 group (each with its whole id as
    # the title of its Test cell), 200 drill-downs
    failing_rows = [{**failing, "test": f"tests/test_f.py::test_layer[{i}]"} for i in range(2000)]
    html = report.render_html(report.session_document(failing_rows))
    assert len(html.encode()) < 5_000_000, len(html.encode())
    page = Page(html)
    assert len(page.rows) == 4000 and page.count("details", **{"class": "drill v-fail"}) == MAX_DRILLDOWNS
    assert f"Only the first {MAX_DRILLDOWNS} failing checks" in html


def test_the_jax_source_of_each_check_is_shown(failing: dict[str, Any]) -> None:
    """The header counts the checks per JAX source; a drill-down names its references."""
    twin = {**copy.deepcopy(failing), "references": ["numeric", "autodiff"], "jax_source": "twin",
            "name": "twin-bug"}
    api = {**copy.deepcopy(failing), "references": ["numeric", "autodiff"],
           "jax_source": "array-api", "name": "api-bug"}
    text = " ".join(Page(report.render_html(report.session_document([twin, api, failing]))).text)
    assert "JAX reference from" in text
    assert "the automatic JAX twin (1 check)" in text
    assert "the forward on JAX arrays (1 check)" in text
    assert "References: numeric, autodiff (the automatic JAX twin)" in text
    assert "References: numeric, autodiff (the forward on JAX arrays)" in text
