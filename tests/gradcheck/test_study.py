"""gradcheck.study: the gradient-flow study of the audit (issue 5) — its rows, its JSON, its report.

The study's 25 models run once per module here (``study`` fixture) at T = 12 rather than the
audit's T = 24: every claim below is about the models' regimes, bounds and labels, which a
12-step sequence shows as well, and the recurrent programs compile in proportion to T (the
audit's T = 24 default is the same code with a longer sequence).  The property test draws
small one-model studies.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import cli, report
from gradcheck.dynamics import SLOPE_THRESHOLD, TRUNCATION_TOLERANCE
from gradcheck.errors import InvalidArgument
from gradcheck.study import STUDY_CONFIGS, STUDY_SCHEMA_VERSION, Study, StudyConfig, flow_study
from tests._profile import examples, sizes

SLACK = 1e-9  # relative rounding slack on the η^(t−k) bound


@pytest.fixture(scope="module")
def study() -> Study:
    return flow_study(T=12)


def test_the_study_covers_the_issue_zoo(study: Study) -> None:
    labels = [row.label for row in study.rows]
    assert labels == [c.label for c in STUDY_CONFIGS]
    for act in ("tanh", "sigmoid"):
        for s in (0.5, 0.9, 1.0, 1.5, 3.0):
            assert f"rnn/{act} σ={s:g}" in labels
    assert {"rnn/relu U=1·I", "lstm", "gru"} <= set(labels)
    assert [f"mlp/sigmoid depth {d}" for d in (2, 3, 4)] == labels[-11:-8]
    assert labels[-8:] == [f"mlp/{act} depth {d} {init}" for act in ("tanh", "relu") for d in (4, 8)
                           for init in ("gaussian", "orthogonal")]
    assert study.agree and all(row.agree for row in study.rows)


def test_pascanu_bound_holds_in_every_elman_row(study: Study) -> None:
    """‖∂h_t/∂h_k‖ ≤ η^(t−k) is an upper bound whatever η is: the ratio never exceeds 1."""
    for row in study.rows:
        if row.config.kind != "rnn":
            assert math.isnan(row.bound_ratio)
            continue
        assert row.bound_ratio <= 1 + SLACK, row.label
        if row.eta < 1:  # sufficient condition for vanishing: decay at least as fast as log η
            assert row.regime == "vanishing" and row.slope < row.log_eta, row.label


def test_growth_only_with_eta_above_one(study: Study) -> None:
    for row in study.rows:
        if row.regime == "exploding":
            assert row.eta > 1 and row.slope > 0, row.label


def test_identity_relu_sits_on_the_bound(study: Study) -> None:
    """U = s·I with every unit active: J_t = U, so the norms change by exactly s per step."""
    for s, regime in ((1.0, "stable"), (1.1, "exploding")):
        row = study.row(f"rnn/relu U={s:g}·I")
        assert row.eta == pytest.approx(s, rel=1e-12)
        assert row.slope == pytest.approx(math.log(s), abs=1e-9)
        assert row.bound_ratio == pytest.approx(1.0, rel=1e-9)
        assert row.regime == regime


def test_sigmoid_decays_faster_than_tanh_at_the_same_scale(study: Study) -> None:
    """γ = ¼ for the sigmoid: at equal σ_max(U) its gradients vanish faster than tanh's."""
    for s in (0.5, 0.9, 1.0, 1.5, 3.0):
        tanh, sig = study.row(f"rnn/tanh σ={s:g}"), study.row(f"rnn/sigmoid σ={s:g}")
        assert sig.eta == pytest.approx(tanh.eta / 4)
        assert sig.slope < tanh.slope


def test_slopes_rise_with_the_spectral_scale(study: Study) -> None:
    for act in ("tanh", "sigmoid"):
        slopes = [study.row(f"rnn/{act} σ={s:g}").slope for s in (0.5, 0.9, 1.0, 1.5, 3.0)]
        assert slopes == sorted(slopes), (act, slopes)


def test_truncation_curve_ends_exact_and_names_the_smallest_tau(study: Study) -> None:
    for row in study.rows:
        errs = row.flow.truncation_errors
        if row.config.kind == "mlp":
            assert row.min_truncation is None
            continue
        assert len(errs) == study.T and errs[-1] <= 1e-12, row.label
        tau = row.min_truncation
        assert tau is not None and 1 <= tau <= study.T
        assert errs[tau - 1] <= TRUNCATION_TOLERANCE
        assert all(e > TRUNCATION_TOLERANCE for e in errs[: tau - 1])
    # faster vanishing needs a shorter truncation
    assert study.row("rnn/tanh σ=0.5").min_truncation < study.row("rnn/tanh σ=3").min_truncation


def test_mlp_rows_follow_nielsen_and_pascanu(study: Study) -> None:
    """Sigmoid MLPs: earlier layers learn more slowly (negative slope), below log η (γ = ¼)."""
    for d in (2, 3, 4):
        row = study.row(f"mlp/sigmoid depth {d}")
        assert row.flow.axis == "depth" and len(row.flow.norms) == d + 1
        assert row.gamma == 0.25 and row.eta == pytest.approx(row.sigma_max / 4)
        assert row.slope < row.log_eta < 0 and row.regime == "vanishing"


def test_to_dict_is_strict_json(study: Study) -> None:
    doc = study.to_dict()
    assert doc["schema"] == STUDY_SCHEMA_VERSION
    assert doc["slope_threshold"] == SLOPE_THRESHOLD and doc["truncation_tolerance"] == TRUNCATION_TOLERANCE
    text = json.dumps(doc, allow_nan=False)  # NaN (gated cells' η) written as strings
    back = json.loads(text)
    assert len(back["rows"]) == len(STUDY_CONFIGS)
    lstm = next(r for r in back["rows"] if r["label"] == "lstm")
    assert lstm["eta"] == "nan" and lstm["flow"]["schema"] == "gradcheck.flow/1"


def test_table_has_a_line_per_model(study: Study) -> None:
    lines = study.table().splitlines()
    assert len(lines) == 2 + len(STUDY_CONFIGS)
    for row, line in zip(study.rows, lines[2:], strict=True):
        assert line.startswith(row.label + " ") and row.regime in line  # the whole label


def test_orthogonal_tanh_stacks_keep_their_spectrum_together_and_relu_stacks_cannot(study: Study) -> None:
    """Issue 16 (Saxe et al. 2014; Pennington et al. 2017): at the critical scale an orthogonal tanh
    stack's ∂y/∂x has its singular values far closer together than a Gaussian one's, at depth 4
    and 8, and a ReLU stack's spread is wider than the orthogonal tanh stack's with either
    initialisation (0/1 derivatives project directions out).  Seeds 1 and 2 show the same order
    (benchmarks/RESULTS.md); every one of these flows agrees with JAX and is the model's."""
    for d in (4, 8):
        tanh_gauss, tanh_orth = (study.row(f"mlp/tanh depth {d} {i}") for i in ("gaussian", "orthogonal"))
        assert tanh_orth.spread * 3 < tanh_gauss.spread, (d, tanh_orth.spread, tanh_gauss.spread)
        assert tanh_orth.eta == pytest.approx(1.0, rel=1e-9)  # σ_max(Q) = 1, γ = 1
        for init in ("gaussian", "orthogonal"):
            relu = study.row(f"mlp/relu depth {d} {init}")
            assert relu.spread > tanh_orth.spread, (d, init, relu.spread, tanh_orth.spread)
        for row in (tanh_gauss, tanh_orth):
            assert row.agree and row.flow.cause == "model" and row.flow.spectrum is not None


def test_an_mlp_rows_eta_is_the_geometric_mean_of_its_flows_per_layer_eta(study: Study) -> None:
    """Issue 16, item 1: a stack's σ_max and η come from its own per-layer Jacobians."""
    for row in study.rows:
        if row.config.kind != "mlp":
            continue
        etas, sigmas = row.flow.layer_eta[1:], row.flow.weight_sigma[1:]
        assert len(etas) == row.config.depth and np.all(etas > 0)
        assert row.eta == pytest.approx(float(np.exp(np.mean(np.log(etas)))), rel=1e-12)
        assert row.sigma_max == pytest.approx(float(np.exp(np.mean(np.log(sigmas)))), rel=1e-12)
        assert min(etas) <= row.eta <= max(etas)


def test_the_practice_tools_judge_the_same_hand_gradients_and_flip_under_rescaling(study: Study) -> None:
    """Issue 16, side by side: every Elman RNN and MLP row carries AUTOTRAINER's and DeepDiagnosis'
    verdicts on its hand gradients (per time step / per layer) and their flips under the five
    rescaled losses; gated cells have none.  Their absolute thresholds flip somewhere in the zoo
    (gradcheck's scale-free regimes never do: test_dynamics' rescaling properties)."""
    for row in study.rows:
        assert (row.practice is None) == (row.config.kind in ("lstm", "gru")), row.label
    judged = [row.practice for row in study.rows if row.practice is not None]
    assert all(p.variants == 5 for p in judged)
    assert sum(p.autotrainer_flips + p.deepdiagnosis_flips for p in judged) > 0
    doc = study.to_dict()
    lstm = next(r for r in doc["rows"] if r["label"] == "lstm")
    assert lstm["practice"] is None
    first = doc["rows"][0]["practice"]
    assert first["autotrainer"]["issue"] == study.rows[0].practice.autotrainer.issue  # type: ignore[union-attr]


def test_report_renders_the_study_section(study: Study, tmp_path: Path) -> None:
    doc = report.session_document([], study=study.to_dict(), title="study")
    page = report.write_html(doc, tmp_path / "study.html").read_text()
    assert 'id="study-table"' in page and 'id="study-slope"' in page and 'id="study-truncation"' in page
    spectra = page.split('id="study-spectrum"', 1)[1].split("</figure>", 1)[0]
    assert all(f">{row.label}</text>" in spectra for row in study.rows if math.isfinite(row.top))
    body = page.split('id="study-table"', 1)[1].split("</table>", 1)[0]
    assert body.count("<tr>") == 1 + len(STUDY_CONFIGS)  # header + one per model
    assert ">AUTOTRAINER</button>" in body and ">DeepDiagnosis</button>" in body
    assert ">saturated</button>" in body and ">dead units (most)</button>" in body
    fractions = re.findall(r'<td class="n frac" data-v="[^"]*" title="([^"]*)">([^<]*)</td>', body)
    assert len(fractions) == 2 * len(STUDY_CONFIGS)
    for row, (sat, dead) in zip(study.rows, zip(fractions[0::2], fractions[1::2], strict=True), strict=True):
        saturation, per_step = row.flow.saturation, row.flow.dead_per_step
        assert sat[1] == (f"{saturation:.0%}" if math.isfinite(saturation) else "n/a"), (row.label, sat)
        if np.isfinite(per_step).any():
            most = int(np.nanargmax(per_step))
            assert dead[1] == f"{per_step[most]:.0%}" and dead[0].endswith(f" {most}"), (row.label, dead)
        else:
            assert dead[1] == "n/a", (row.label, dead)
    practice = re.findall(r'<td class="practice( bad)?" title="[^"]*">([^<]*)</td>', body)
    assert len(practice) == 2 * len(STUDY_CONFIGS)
    for row, (at, dd) in zip(study.rows, zip(practice[0::2], practice[1::2], strict=True), strict=True):
        if row.practice is None:
            assert at[1] == dd[1] == "—"
        else:
            assert at[1].startswith(row.practice.autotrainer.issue or "none")
            assert (at[0] == " bad") == (row.practice.autotrainer_flips > 0)
            assert (dd[0] == " bad") == (row.practice.deepdiagnosis_flips > 0)
    for row in study.rows:
        assert f"<strong>{row.label}</strong>" in page
    # the section from a study's own JSON file, through the command line (two of its models:
    # the same code path, without drawing all the figures twice)
    source = tmp_path / "study.json"
    part = study.to_dict()
    part["rows"] = part["rows"][:2]
    source.write_text(json.dumps(part))
    out = io.StringIO()
    assert cli.report(source, tmp_path / "again.html", stream=out) == 0
    assert "gradient-flow study of 2 models" in out.getvalue()
    again = (tmp_path / "again.html").read_text()
    assert 'id="study-table"' in again and f"<strong>{study.rows[1].label}</strong>" in again
    assert f"<strong>{study.rows[2].label}</strong>" not in again


def test_the_study_table_says_whose_regime_each_row_shows() -> None:
    """Issue 16, "bug or model?": a row whose hand norms part from JAX's says the backward is
    wrong and from which step; rows that agree say the regime is the model's."""
    from gradcheck.dynamics import gradient_flow
    from tests.gradcheck.test_dynamics import PlantedCarry, _identity_relu

    doc = _small().to_dict()
    _, params, x = _identity_relu(1.0)
    flow = gradient_flow(PlantedCarry("relu", carry=0.0), params, x)
    at = x.shape[0] - 2
    assert (flow.cause, flow.parted_at) == ("backward", at)
    doc["rows"][0].update(label="rnn/relu, carry dropped", flow=flow.to_dict(), cause=flow.cause,
                          parted_at=flow.parted_at, agree=False)
    page = html.unescape(report.render_html(report.session_document([], study=doc)))
    table = page.split('id="study-table"', 1)[1].split("</table>", 1)[0]
    assert "<button type=\"button\">Bug or model?</button>" in table
    cells = re.findall(r'<td class="cause( bad)?" title="([^"]*)">([^<]*)</td>', table)
    assert [(bad, text) for bad, _, text in cells] == [(" bad", f"backward, from step {at}"), ("", "model")]
    assert "the hand backward is wrong" in cells[0][1] and "the regime is the model's" in cells[1][1]
    caption = page.split("<strong>rnn/relu, carry dropped</strong>", 1)[1].split("</figcaption>", 1)[0]
    assert f"the hand backward is wrong, not the model</strong> (its norms leave JAX's at step {at})" in caption
    mlp = page.split(f"<strong>{doc['rows'][1]['label']}</strong>", 1)[1].split("</figcaption>", 1)[0]
    assert "the regime is the model's" in mlp and "wrong" not in mlp


def test_study_labels_are_escaped_in_the_report(tmp_path: Path) -> None:
    small = flow_study(T=4, hidden=3, batch=1, configs=[StudyConfig("rnn", "tanh", 0.5)]).to_dict()
    small["rows"][0]["label"] = "<script>alert(1)</script>$x$"
    page = report.render_html(report.session_document([], study=small))
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_study_record_is_validated() -> None:
    with pytest.raises(report.ReportFormatError, match=r"gradcheck\.study/1"):
        report.session_document([], study={"schema": "something else", "rows": []})


# ----------------------------------------------------------------------------- the audit


class _Disagreeing:
    """A study whose hand and JAX norms disagree in one row: the audit must not exit 0."""

    def __init__(self, real: Study) -> None:
        self._real = real
        self.rows = real.rows
        self.agree = False

    def table(self) -> str:
        return self._real.table()

    def to_dict(self) -> dict[str, Any]:
        return {**self._real.to_dict(), "agree": False}


OK_MODULE = '''
import numpy as np

def f(p):
    return float(np.sum(np.sin(p["w"])))

def g(p):
    return {"w": np.cos(p["w"])}

GRADCHECK_CASES = [{"name": "sin/ok", "fun": f, "grad": g, "params": {"w": np.linspace(0, 1, 5)}}]
'''


def _small() -> Study:
    return flow_study(T=5, hidden=3, batch=1, configs=[StudyConfig("rnn", "tanh", 0.9),
                                                       StudyConfig("mlp", "sigmoid", depth=2)])


def test_audit_records_the_study_and_fails_on_disagreement(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "okstudy.py").write_text(OK_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = io.StringIO()
    assert cli.audit(["okstudy"], tmp_path / "a", stream=out, study=_small) == 0
    doc = json.loads((tmp_path / "a" / "gradcheck.json").read_text())
    assert doc["study"]["schema"] == STUDY_SCHEMA_VERSION and len(doc["study"]["rows"]) == 2
    assert "gradient-flow study (T=5" in out.getvalue()
    assert 'id="study-table"' in (tmp_path / "a" / "gradcheck.html").read_text()

    assert cli.audit(["okstudy"], tmp_path / "b", stream=io.StringIO(),
                     study=lambda: _Disagreeing(_small())) == 1  # type: ignore[arg-type, return-value]
    # no study unless asked: the audit of a user's module runs none by default
    assert cli.audit(["okstudy"], tmp_path / "c", stream=io.StringIO()) == 0
    assert "study" not in json.loads((tmp_path / "c" / "gradcheck.json").read_text())


# ----------------------------------------------------------------------------- arguments and properties


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"T": 2}, "T=2"), ({"hidden": 0}, "hidden=0"), ({"batch": True}, "batch=True"), ({"seed": -1}, "seed=-1"),
    ({"configs": ["rnn"]}, "expected StudyConfig"),
])
def test_bad_arguments_are_explained(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        flow_study(**kwargs)


@pytest.mark.parametrize(("args", "message"), [
    (("cnn", "tanh", 1.0), "kind='cnn'"), (("rnn", "tanh", None), "positive scale"),
    (("rnn", "swish", 1.0), "activation"), (("mlp", "sigmoid"), "depth >= 1"),
])
def test_bad_configs_are_explained(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        StudyConfig(*args)


@settings(max_examples=examples(12), deadline=None)
@given(act=st.sampled_from(["tanh", "sigmoid", "relu"]), scale=st.floats(0.3, 3.0),
       T=sizes(3, 10), hidden=sizes(1, 5), seed=st.integers(0, 2**16))
def test_any_elman_study_row_obeys_the_bound(act: str, scale: float, T: int, hidden: int, seed: int) -> None:
    row = flow_study(T=T, hidden=hidden, batch=2, seed=seed, configs=[StudyConfig("rnn", act, scale)]).rows[0]
    assert row.agree
    assert row.bound_ratio <= 1 + SLACK
    if row.eta < 1:
        assert row.regime == "vanishing"
    if row.regime == "exploding":
        assert row.eta > 1
    assert row.flow.truncation_errors[-1] <= 1e-12


def test_rows_carry_the_spectrum_and_the_cause(study: Study) -> None:
    for row in study.to_dict()["rows"]:
        assert {"spread", "sigma_top", "sigma_bottom", "cause", "parted_at", "model_regime"} <= row.keys()
        assert row["cause"] in ("model", "backward", "")
    tanh = study.row("rnn/tanh σ=0.5")
    assert tanh.flow.spectrum is not None and tanh.spread == tanh.flow.spectrum.spread
    assert tanh.top >= tanh.bottom >= 0
    assert "spread" in study.table().splitlines()[1]
