"""The page's layout (issue "Reports and a CLI people enjoy"): the overview first, groups per
test module or family, outcome toggles, contents, long ids, the Blame column's words, screened
tensors, the drill-down's hint lines, whole error maps, the error by time step, and the
gradient-flow plots through depth."""

from __future__ import annotations

import base64
import copy
import itertools
import re
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gradcheck as gc
from gradcheck import report
from gradcheck.message import advice, blame_text
from gradcheck.report.html import TOC_FAILURES
from gradcheck.report.plots import (
    MapLayout,
    error_map_svg,
    flow_svg,
    step_errors,
    step_errors_svg,
    study_slope_svg,
    study_spectrum_svg,
    truncation_svg,
)
from tests.gradcheck.report.test_html import Page

_TAG = re.compile(r"<[^>]+>")


def _html(rows: list[dict[str, Any]], **kw: Any) -> str:
    return report.render_html(report.session_document(rows, **kw))


def _text(fragment: str) -> str:
    """The text of an HTML fragment, tags dropped and white space collapsed."""
    return " ".join(_TAG.sub(" ", fragment).split())


def _between(html: str, start: str, end: str) -> str:
    a = html.index(start)
    return html[a:html.index(end, a)]


def _groups(html: str) -> list[tuple[str, bool, str]]:
    """(name, open, summary text) of every group of the agreement table, in page order."""
    found = re.findall(r'<details class="group" id="[^"]+"( open)?>\s*<summary>(.*?)</summary>', html, re.S)
    return [(_text(summary).split(" ")[0], bool(is_open), _text(summary)) for is_open, summary in found]


def _flaky(passing: dict[str, Any]) -> dict[str, Any]:
    """A check that passed in a test that failed afterwards."""
    return {**copy.deepcopy(passing), "name": "flaky", "test": "tests/test_layers.py::test_flaky",
            "test_outcome": "failed", "test_failure": "AssertionError: later"}


# -- 1. the overview, groups, toggles and contents ------------------------------------------------


def test_the_overview_comes_first_with_the_counts(rows: list[dict[str, Any]], passing: dict[str, Any]) -> None:
    html = _html([*rows, _flaky(passing)])
    assert html.index('id="overview"') < html.index('id="agreement"') < html.index('id="failures-h"')
    tiles = _text(_between(html, '<ul class="tiles">', "</ul>"))
    for words in ("5 checks", "8 tensors", "3 pass", "1 fail", "1 error", "1 passing in failed tests"):
        assert words in tiles, (words, tiles)


def test_what_needs_attention_is_listed_first_with_links_to_the_drill_downs(
        rows: list[dict[str, Any]], passing: dict[str, Any]) -> None:
    html = _html([*rows, _flaky(passing)])
    attention = _between(html, '<ol class="attention">', "</ol>")
    links = re.findall(r'<a href="#([^"]+)"', attention)
    drills = re.findall(r'<details id="([^"]+)" class="drill', html)
    assert links == drills == ["tanh-sign-bug", "raises", "flaky"]
    text = _text(attention)
    assert "W: sign flip" in text and "test failed" in text
    assert "tanh/ok" not in text  # a pass is not news
    assert html.index('<ol class="attention">') < html.index('<details class="group"')


def test_one_group_per_test_module_failing_groups_first_and_open(
        rows: list[dict[str, Any]], passing: dict[str, Any]) -> None:
    more = {**copy.deepcopy(passing), "test": "tests/test_more.py::test_more"}
    html = _html([more, *rows])
    groups = _groups(html)
    assert [(name, is_open) for name, is_open, _ in groups] == [
        ("tests/test_layers.py", True), ("tests/test_more.py", False), ("tests/test_rnn.py", False)]
    assert "1 error" in groups[0][2] and "1 fail" in groups[0][2] and "3 pass" in groups[0][2]
    assert groups[1][2].endswith("2 pass")
    page = Page(html)
    first = [cells[10] for cells in page.rows[:5]]  # the rows of the first group
    assert first[:2] == ["fail", "error"] and first[2:] == ["pass"] * 3  # failures before passes


def test_an_audit_is_grouped_by_family(passing: dict[str, Any], failing: dict[str, Any]) -> None:
    audit = {"schema": "gradcheck.audit/1", "modules": ["reference.cases"], "results": [
        {**passing, "family": "rnn", "module": "reference.cases"},
        {**failing, "family": "dense", "module": "reference.cases"},
        {**passing, "family": "dense", "module": "reference.cases"}]}
    groups = _groups(report.render_html(audit))
    assert [(name, is_open) for name, is_open, _ in groups] == [("dense", True), ("rnn", False)]
    assert "1 fail" in groups[0][2] and "3 pass" in groups[0][2]


def test_a_session_of_one_module_is_grouped_by_test_function(passing: dict[str, Any],
                                                             failing: dict[str, Any]) -> None:
    rows = [{**passing, "test": "tests/t.py::test_a[1]"}, {**failing, "test": "tests/t.py::test_a[2]"},
            {**passing, "test": "tests/t.py::TestB::test_b"}]
    assert [(n, o) for n, o, _ in _groups(_html(rows))] == [
        ("tests/t.py::test_a", True), ("tests/t.py::TestB::test_b", False)]


def test_outcome_toggles_are_checkboxes_with_counts_shown_by_the_script_only(
        rows: list[dict[str, Any]]) -> None:
    html = _html(rows)
    controls = _between(html, '<div class="controls" id="controls" hidden>', "</div>")
    boxes = re.findall(r'<input type="checkbox" checked data-outcome="([^"]+)">\s*([^<]*)</label>', controls)
    assert [(v, " ".join(t.split())) for v, t in boxes] == [
        ("error", "error (1 tensor)"), ("fail", "fail (1 tensor)"), ("pass", "pass (4 tensors)")]
    js = _between(html, "<script>", "</script>")
    assert "#toggles input[data-outcome]" in js and "box.checked" in js


def test_the_contents_link_to_every_section_and_each_failure(rows: list[dict[str, Any]]) -> None:
    study = {"schema": "gradcheck.study/1", "rows": []}
    html = _html(rows, study=study)
    nav = _between(html, '<nav class="toc"', "</nav>")
    hrefs = re.findall(r'href="#([^"]+)"', nav)
    assert hrefs == ["overview", "agreement-h", "failures-h", "tanh-sign-bug", "raises", "flows-h", "study-h"]
    ids = set(Page(html).attrs("id"))
    assert set(hrefs) <= ids  # every link resolves


def test_the_contents_name_only_the_first_failures(failing: dict[str, Any]) -> None:
    rows = [{**failing, "name": f"bug{i}", "test": f"tests/t.py::test_{i}"} for i in range(TOC_FAILURES + 3)]
    nav = _between(_html(rows), '<nav class="toc"', "</nav>")
    assert len(re.findall(r'href="#bug', nav)) == TOC_FAILURES and "and 3 more" in _text(nav)


# -- 2. long test ids ---------------------------------------------------------------------------------


def test_a_long_test_id_is_cut_with_the_whole_id_on_hover(rows: list[dict[str, Any]]) -> None:
    long_id = "tests/test_layers.py::test_" + "very_long_parameter_" * 14
    assert len(long_id) > 300
    rows[1]["test"] = long_id
    html = _html(rows)
    page = Page(html)
    at = next(i for i, cells in enumerate(page.rows) if cells[1] == "tanh/sign-bug")
    assert page.cells[at][0]["title"] == long_id
    assert page.rows[at][0] == long_id.split("::", 1)[1]  # the group's summary names the module
    css = _between(html, "<style>", "</style>")
    # the Test and Check columns are capped with an ellipsis; narrow screens drop secondary columns
    assert re.search(r"table\.agreement td:nth-child\(1\), table\.agreement td:nth-child\(2\) \{ max-width: "
                     r"16rem; overflow: hidden;\s*text-overflow: ellipsis; white-space: nowrap; \}", css)
    assert "@media (max-width: 600px)" in css and "@media (max-width: 900px)" in css
    attention = _between(html, '<ol class="attention">', "</ol>")
    assert f'class="clip" title="{long_id}"' in attention


# -- 3. the Blame column -----------------------------------------------------------------------------


@pytest.mark.parametrize(("diagnosis", "n_bad", "words"), [
    ({"kind": "sign_flip"}, 12, "hand: sign flip"),
    ({"kind": "scale", "factor": 0.5}, 12, "hand: scale 0.5"),
    ({"kind": "transpose"}, 12, "hand: transpose"),
    ({"kind": "time_steps", "axis": 0, "indices": [0]}, 3, "hand: time step 0"),
    ({"kind": "time_steps", "axis": 0, "indices": [4, 2, 3]}, 9, "hand: time steps 2–4"),
    ({"kind": "rows", "axis": 0, "indices": [2, 3]}, 6, "hand: rows 2–3"),
    ({"kind": "columns", "axis": 1, "indices": [1, 4, 5]}, 6, "hand: columns 1, 4–5"),
    ({"kind": "entries", "indices": [[0, 1], [2, 2], [3, 0]]}, 3, "hand: 3 entries"),
    ({"kind": "entries", "indices": [[0, 1]]}, 1, "hand: 1 entry"),
    ({"kind": "scattered", "indices": [[0, 1]]}, 7, "hand: scattered"),
    ({"kind": "widespread"}, 12, "hand: widespread"),
    ({"kind": "zero"}, 12, "hand: all zero"),
    ({"kind": "shift", "factor": 1.0, "axis": 0}, 12, "hand: shifted +1 step"),
    ({"kind": "clipped", "factor": 2.5}, 4, "hand: clipped at ±2.5"),
    ({"kind": "single", "factor": 2.0, "indices": [[0]]}, 1, "hand: single entry"),
])
def test_the_blame_column_says_the_bug_in_a_few_words(failing: dict[str, Any], diagnosis: dict[str, Any],
                                                      n_bad: int, words: str) -> None:
    row = copy.deepcopy(failing)
    row["leaves"][0]["diagnosis"] = {"factor": None, "axis": None, "indices": [], **diagnosis,
                                     "summary": f"the whole summary of {diagnosis['kind']}"}
    row["leaves"][0]["n_mismatched"] = n_bad
    page = Page(_html([row]))
    at = next(i for i, cells in enumerate(page.rows) if cells[2] == "W")
    assert page.rows[at][11] == words
    assert page.cells[at][11]["title"] == f"the whole summary of {diagnosis['kind']}"


def test_a_blame_other_than_hand_is_its_name_alone(failing: dict[str, Any]) -> None:
    row = copy.deepcopy(failing)
    row["leaves"][0].update(blame="numeric", verdict="pass")
    page = Page(_html([row]))
    assert next(cells[11] for cells in page.rows if cells[2] == "W") == "numeric"


# -- 4. the drill-down's hint lines ----------------------------------------------------------------


def test_the_drill_down_says_who_what_to_do_and_the_seed(failing: dict[str, Any]) -> None:
    row = copy.deepcopy(failing)
    row["seed"] = 7
    leaf = row["leaves"][0]
    html = _html([row])
    body = _text(_between(html, '<details id="tanh-sign-bug"', "</details>"))
    assert f"Blame: {blame_text('hand')}" in body
    assert advice(leaf) and f"What to do: {advice(leaf)}" in body
    assert "Reproduce with seed=7 ." in body or "Reproduce with seed=7." in body


def test_an_inconclusive_leaf_gets_its_advice_too(failing: dict[str, Any]) -> None:
    row = copy.deepcopy(failing)
    row["verdict"] = "inconclusive"
    row["leaves"][0].update(verdict="inconclusive", blame="all", diagnosis=None)
    body = _text(_between(_html([row]), '<details id="tanh-sign-bug"', "</details>"))
    assert f"What to do: {advice(row['leaves'][0])}" in body and "Make the forward smooth" in body
    assert f"Blame: {blame_text('all')}" in body


# -- 5. screened tensors -----------------------------------------------------------------------------


def _tanh(p: dict[str, Any]) -> Any:
    return np.sum(np.tanh(p["W"]))


def _tanh_grad(p: dict[str, Any]) -> dict[str, Any]:
    return {"W": 1 - np.tanh(p["W"]) ** 2}


@pytest.fixture(scope="module")
def screened() -> dict[str, Any]:
    """A real check screened along directional probes against finite differences only."""
    p = {"W": np.random.default_rng(0).normal(size=(5, 4))}
    res = gc.check_grad(_tanh, _tanh_grad, p, mode="directional", references=("numeric",), name="screened")
    leaf = res.to_dict()["leaves"][0]
    assert leaf["mode"] == "directional" and leaf["hand_vs_numeric"] is None and leaf["n_probes"] > 0
    return res.to_dict()


def test_a_screened_tensor_says_probes_and_power_instead_of_a_dash(screened: dict[str, Any]) -> None:
    leaf = screened["leaves"][0]
    page = Page(_html([screened]))
    (cells,) = page.rows
    power = float(leaf["detection_power"])
    assert cells[5] == f"screened: {leaf['n_probes']} probes, power {power:.1e}"
    assert cells[6] == "—"  # autodiff was not a reference of this check
    assert "screened" in (page.cells[0][5]["class"] or "")


def test_a_screened_cell_per_reference_without_entry_numbers(screened: dict[str, Any]) -> None:
    row = copy.deepcopy(screened)
    row["references"] = ["numeric", "autodiff"]
    leaf = row["leaves"][0]
    (cells,) = Page(_html([row])).rows
    assert cells[5].startswith("screened: ") and cells[6].startswith("screened: ")
    leaf["hand_vs_autodiff"] = {"max_abs_err": 1e-16, "max_rel_err": 2e-15, "norm_rel_err": 1e-16,
                                "cosine": 1.0, "n_bad": 0, "n_compared": 20, "agree": True}
    (cells,) = Page(_html([row])).rows
    assert cells[5].startswith("screened: ") and cells[6] == "2.00e-15"  # autodiff measured every entry
    leaf.update(mode="full", n_probes=0, probes=[])
    (cells,) = Page(_html([row])).rows
    assert cells[5] == "—"  # not screened: no claim


# -- 6. error maps and the error by time step ------------------------------------------------------


def _leaf(shape: list[int], values: Sequence[float | None] | None, *, time_axis: int | None = None,
          name: str = "h") -> dict[str, Any]:
    n = int(np.prod(shape)) if shape else 1
    return {"name": name, "shape": shape, "dtype": "float64", "verdict": "fail", "blame": "hand", "mode": "full",
            "tolerance": {"rtol": 1e-6, "atol": 1e-9, "dtype": "float64"}, "n_elements": n, "n_checked": n,
            "n_mismatched": 1, "worst": [], "diagnosis": None, "notes": [], "time_axis": time_axis,
            "error_map": None if values is None else {"values": list(values), "reference": "autodiff"}}


def _row(*leaves: dict[str, Any]) -> dict[str, Any]:
    return {"name": "seq", "verdict": "fail", "seed": 3, "references": ["numeric", "autodiff"],
            "leaves": list(leaves)}


def _cells(svg: str) -> list[tuple[str, str]]:
    """(index, value) of the cells an error map draws one by one."""
    return re.findall(r"<title>(\[[\d, ]+\]): ([^<]+)</title></rect>", svg)


def test_a_1d_error_map_is_one_row_of_every_entry() -> None:
    svg = error_map_svg(_leaf([5], [0.1, None, 0.0, 1e-3, 1.0]), "m-")
    assert svg is not None
    assert _cells(svg) == [("[0]", "0.1"), ("[1]", "not measured"), ("[2]", "0"), ("[3]", "0.001"),
                           ("[4]", "1")]
    assert svg.count('class="unmeasured"') == 1
    ys = set(re.findall(r'<rect (?:class="unmeasured" )?x="[\d.]+" y="([\d.]+)" width="[\d.]+" '
                        r'height="[\d.]+" fill="[^"]+"><title>', svg))
    assert ys == {"0"}  # one row
    assert "log scale" in svg and "1.0e+00" in svg and "not measured" in svg  # the legend


def test_a_long_1d_map_is_wrapped_and_a_2d_map_is_its_grid() -> None:
    assert (MapLayout([100]).rows, MapLayout([100]).cols) == (2, 64)
    assert "wrapped in rows of 64" in MapLayout([100]).note
    grid = MapLayout([4, 3])
    assert (grid.panels, grid.rows, grid.cols) == (1, 4, 3) and grid.place(7) == (0, 2, 1)
    svg = error_map_svg(_leaf([4, 3], [float(k) for k in range(12)]), "m-")
    assert svg is not None and len(_cells(svg)) == 12 and ("[2, 1]", "7") in _cells(svg)


def test_a_sequence_map_is_one_small_grid_per_time_step() -> None:
    layout = MapLayout([6, 2, 3], 0)
    assert (layout.panels, layout.rows, layout.cols, layout.axis) == (6, 2, 3, 0)
    assert layout.place(3 * 6 + 1 * 3 + 2) == (3, 1, 2)
    assert "one small grid per time step (axis 0)" in layout.note
    batch_first = MapLayout([2, 6, 3], 1)  # (N, T, D)
    assert batch_first.panels == 6 and batch_first.place(1 * 18 + 4 * 3 + 2) == (4, 1, 2)
    values = [1e-3 if k // 6 == 3 else 1e-16 for k in range(36)]
    svg = error_map_svg(_leaf([6, 2, 3], values, time_axis=0), "m-")
    assert svg is not None
    assert re.findall(r'<text class="panel"[^>]*>([^<]+)</text>', svg) == [f"t = {t}" for t in range(6)]
    assert len(_cells(svg)) == 36
    four = MapLayout([2, 3, 4, 5])
    assert (four.panels, four.rows, four.cols) == (2, 12, 5) and "axes 1, 2 flattened" in four.note
    many = MapLayout([40, 2, 3])  # too many steps for small multiples: flattened
    assert (many.panels, many.rows, many.cols) == (1, 80, 3) and "flattened down" in many.note


def _png_size(svg: str) -> list[tuple[int, int]]:
    out = []
    for payload in re.findall(r'href="data:image/png;base64,([^"]+)"', svg):
        png = base64.b64decode(payload)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
        out.append(struct.unpack(">II", png[16:24]))
    return out


def test_a_large_map_is_a_picture_of_a_pixel_per_entry() -> None:
    svg = error_map_svg(_leaf([20, 30], [(k % 7) * 1e-3 or None for k in range(600)]), "m-")
    assert svg is not None and _cells(svg) == [] and _png_size(svg) == [(30, 20)]
    panels = error_map_svg(_leaf([3, 10, 10], [1e-3] * 300, time_axis=0), "m-")
    assert panels is not None and _png_size(panels) == [(10, 10)] * 3


def test_without_a_usable_error_map_the_worst_entries_are_shown(failing: dict[str, Any]) -> None:
    leaf = failing["leaves"][0]
    assert error_map_svg({**leaf, "error_map": None}, "m-") is None
    assert error_map_svg({**leaf, "error_map": {"values": [0.1] * 5, "reference": "numeric"}}, "m-") is None
    row = copy.deepcopy(failing)
    row["leaves"][0]["error_map"] = {"values": [0.1] * 5, "reference": "numeric"}  # not 4×3: ignored
    text = _text(_html([row]))
    assert "worst 5 entries only" in text and "of every entry" not in text


def test_the_drill_down_draws_the_whole_map_with_its_caption() -> None:
    seq = _leaf([4, 2, 3], [1e-2 if k // 6 == 1 else None if k == 0 else 0.0 for k in range(24)],
                time_axis=0, name="x")
    html = _html([_row(seq, _leaf([3], [0.5, 0.1, None], name="b"))])
    text = _text(html)
    assert "Relative error |hand − autodiff| / max|autodiff| of every entry of x (4×2×3; one small grid per " \
           "time step (axis 0)" in text
    assert "grey ones were not measured" in text and "white entries agree exactly" in text
    assert html.count('class="heat errmap"') == 2
    ids = Page(html).attrs("id")
    assert len(ids) == len(set(ids))  # two maps, one gradient each, unique ids
    assert set(re.findall(r"url\(#([^)]+)\)", html)) <= set(ids)


def test_the_error_by_time_step() -> None:
    values: list[float | None] = [1e-16, 2e-16, 0.3, 0.1, None, None, 0.0, 1e-3]
    leaf = _leaf([4, 2], values, time_axis=0)
    assert step_errors(leaf) == [2e-16, 0.3, None, 1e-3]
    assert step_errors(_leaf([2, 4], values, time_axis=1)) == [1e-16, 2e-16, 0.3, 0.1]
    assert step_errors(_leaf([4, 2], values)) is None  # not a sequence
    assert step_errors(_leaf([8], values, time_axis=0)) is None  # one axis: the map says it all
    svg = step_errors_svg(leaf, "s-")
    assert svg is not None and "time step (axis 0)" in svg and 'class="plot"' in svg
    html = _html([_row(leaf, _leaf([4, 2], values, name="W"))])
    assert html.count('<figure class="steps">') == 1  # for the sequence only
    assert "The largest relative error at each time step (axis 0 of h)" in _text(html)


# -- 7. gradient flow through depth, and the study's labels --------------------------------------


def _svg_texts(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


@pytest.mark.parametrize("n_layers", [2, 3, 5])
def test_a_depth_flow_has_whole_layers_on_its_axis(n_layers: int) -> None:
    norms = [0.2 * 3.0 ** i for i in range(n_layers)]
    svg = flow_svg({"axis": "depth", "hand_norms": norms, "autodiff_norms": norms, "eta": "nan"}, "d-")
    assert svg is not None
    ticks = [t for t in _svg_texts(svg) if re.fullmatch(r"[\d.]+", t)]
    assert ticks and all(t.isdigit() for t in ticks), ticks  # no layer 0.5
    assert "layer i" in _svg_texts(svg)


_FROM_SUPERSCRIPT = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹−", "-0123456789-")


def _tick_value(label: str) -> float:
    """``2×10⁻³`` -> 0.002, ``10⁴`` -> 1e4, ``0.5`` -> 0.5."""
    coeff, ten, power = label.rpartition("10")
    if not ten:
        return float(label)
    return float(coeff.removesuffix("×") or 1) * 10.0 ** int(power.translate(_FROM_SUPERSCRIPT))


@given(coeff=st.integers(1, 9), exponent=st.integers(-30, 30))
def test_log_tick_labels_are_matplotlibs_numbers_without_mathtext(coeff: int, exponent: int) -> None:
    from matplotlib.ticker import LogFormatterSciNotation

    from gradcheck.report.plots import _plain_tick

    value = coeff * 10.0 ** exponent
    label = _plain_tick(LogFormatterSciNotation(labelOnlyBase=False)(value))
    assert "$" not in label and "\\" not in label and "{" not in label, label
    assert _tick_value(label) == pytest.approx(value, rel=1e-12), label


def test_log_plots_label_their_decades_in_plain_text() -> None:
    norms = [10.0 ** -k for k in range(9)]
    flow = flow_svg({"hand_norms": norms, "autodiff_norms": norms, "eta": 0.1}, "f-")
    curves = truncation_svg([{"label": "rnn/tanh σ=0.5", "kind": "rnn", "activation": "tanh",
                              "flow": {"truncation_errors": [10.0 ** -k for k in range(1, 7)] + [0.0]}}], "t-")
    for svg in (flow, curves):
        assert svg is not None and "mathdefault" not in svg and "$" not in svg
        decades = {t for t in _svg_texts(svg) if re.fullmatch(r"10[⁻⁰¹²³⁴⁵⁶⁷⁸⁹]+", t)}
        assert len(decades) >= 3, _svg_texts(svg)
    assert {"10⁻⁸", "10⁻⁴", "10⁰"} <= set(_svg_texts(flow))


def test_the_study_spectrum_draws_every_singular_value_of_every_model() -> None:
    rows = [{"label": "rnn/tanh σ=0.5", "kind": "rnn", "activation": "tanh",
             "flow": {"spectrum": {"top": [2.0, 1.0, 0.5], "bottom": [1e-4]}}},
            {"label": "mlp/sigmoid depth 3", "kind": "mlp", "activation": "sigmoid",
             "flow": {"spectrum": {"top": [1e-3], "bottom": ["nan", 0.0, 1e-6]}}},
            {"label": "lstm", "kind": "lstm", "activation": "", "flow": {"spectrum": None}}]
    svg = study_spectrum_svg(rows, "sp-")
    assert svg is not None and "mathdefault" not in svg
    texts = _svg_texts(svg)
    assert "rnn/tanh σ=0.5" in texts and "mlp/sigmoid depth 3" in texts and "lstm" not in texts
    # one circle per positive finite σ (4 + 2; NaN and 0 cannot sit on a log axis) and one per
    # legend entry (top, bottom); tick marks are straight paths
    circles = {m for m, d in re.findall(r'<path id="([^"]+)" d="([^"]*)"', svg) if re.search(r"\bC\b", d)}
    uses = re.findall(r'<use xlink:href="#([^"]+)"', svg)
    assert circles and sum(u in circles for u in uses) == 6 + 2
    assert {"10⁻⁶", "10⁻³", "10⁰"} <= set(texts) and "σ = 1 (isometry)" in texts
    assert study_spectrum_svg([rows[2], {"label": "x"}], "none-") is None


def _label_boxes(svg: str, labels: set[str]) -> list[tuple[str, float, float, float, float]]:
    """Estimated boxes of the 7 pt point labels of the slope plot (0.6 em a character)."""
    out = []
    for anchor, x, y, text in re.findall(r'<text style="font-size: 7px;[^"]*text-anchor: (\w+)[^"]*" '
                                         r'x="([-\d.]+)" y="([-\d.]+)"[^>]*>([^<]*)</text>', svg):
        if text in labels:
            w = 0.6 * 7 * len(text)
            x0 = float(x) if anchor == "start" else float(x) - w if anchor == "end" else float(x) - w / 2
            out.append((text, x0, float(y) - 6, x0 + w, float(y) + 1.5))
    return out


def test_the_study_labels_of_nearby_points_do_not_overlap() -> None:
    points = [("mlp", "sigmoid", "depth 2", -0.896, -1.497), ("mlp", "sigmoid", "depth 3", -0.904, -1.408),
              ("mlp", "sigmoid", "depth 4", -0.906, -1.492), ("rnn", "tanh", "σ=0.5", -0.69, -1.78),
              ("rnn", "sigmoid", "σ=1.5", -0.98, -1.91), ("rnn", "tanh", "σ=0.9", -0.1, -1.2),
              ("rnn", "tanh", "σ=1", 0.0, -1.09), ("rnn", "relu", "U=I", 0.0, 0.0),
              ("rnn", "relu", "U=1.1·I", 0.095, 0.09)]
    rows = [{"kind": k, "activation": a, "label": f"{k}/{a} {label}", "log_eta": x, "slope": y,
             "slope_stderr": 0.05} for k, a, label, x, y in points]
    svg = study_slope_svg(rows, "s-", threshold=0.05)
    assert svg is not None
    boxes = _label_boxes(svg, {p[2] for p in points})
    assert len(boxes) == len(points)
    crossing = [(a[0], b[0]) for a, b in itertools.combinations(boxes, 2)
                if min(a[3], b[3]) > max(a[1], b[1]) and min(a[4], b[4]) > max(a[2], b[2])]
    assert crossing == []
