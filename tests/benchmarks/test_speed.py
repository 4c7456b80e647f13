"""Smoke test of the speed harness (``benchmarks/speed.py``) in its ``--quick`` configuration.

One quick run of a few groups (the conv with both forwards and JAX, the dense layer with a planted
wrong entry, the char-RNN correct and buggy, the 3×2 layer with the fresh-process check): the rows
are there, the planted entry is caught and named, correct cases pass, ratios are positive finite
numbers, and the markdown and JSON render.  No wall-clock time is asserted anywhere.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import speed
from benchmarks.adapters import Case, gradcheck_outcome
from reference import dense

GROUPS = ("conv", "dense64", "charrnn", "tiny")


@pytest.fixture(scope="module")
def result() -> speed.SpeedResult:
    return speed.run_speed(quick=True, budget_s=30.0, only=GROUPS, log=lambda s: None)


def test_rows_exist_for_every_group(result: speed.SpeedResult) -> None:
    assert [r.group for r in result.rows] == ["conv", "conv", "dense64", "dense64", "charrnn",
                                              "charrnn", "tiny"]
    conv = result.group("conv")
    assert [r.forward for r in conv] == ["array-API", "numpy-only"]
    for r in result.rows:
        assert r.n > 0 and r.runs >= 1 and r.forward_calls > 0
        assert r.status in ("pass", "fail"), (r.label, r.status, r.detail)


def test_planted_entry_is_caught_and_named(result: speed.SpeedResult) -> None:
    correct, wrong = result.group("dense64")
    assert wrong.expect == "fail" and wrong.status == "fail"
    assert wrong.caught and wrong.named is True and wrong.named_by is not None
    assert "W" in wrong.failing and wrong.ok
    assert correct.status == "pass" and correct.ok and correct.named is None


def test_correct_cases_pass_and_the_char_rnn_bug_fails(result: speed.SpeedResult) -> None:
    for r in result.rows:
        if r.expect == "pass":
            assert r.status == "pass" and r.ok, (r.label, r.status, r.detail)
    good, bad = result.group("charrnn")
    assert good.expect == "pass" and good.status == "pass"
    assert bad.status == "fail" and bad.caught and bad.ok
    assert "Whh" in bad.failing
    assert bad.diagnosis.startswith("Whh") and "Whh" in bad.message


def test_ratios_are_positive_finite(result: speed.SpeedResult) -> None:
    for r in result.rows:
        assert r.fd.calls > 0 and r.fd.needed == 2 * r.n + 2
        for v in (r.cold_s, r.warm_s, r.fd.seconds, r.speedup):
            assert math.isfinite(v) and v > 0, (r.label, v)
        g = r.gc_over_jax
        if r.forward == "array-API":
            assert r.jax is not None and r.jax.status == "pass"
            assert g is not None and math.isfinite(g) and g > 0
        else:
            assert g is None
    fresh = result.fresh
    assert fresh is not None and fresh["status"] == "pass"
    assert 0 < fresh["import_s"] <= fresh["total_s"] <= fresh["process_s"]


def test_markdown_targets_and_json(result: speed.SpeedResult, tmp_path: Path) -> None:
    md = speed.render(result)
    assert "### Targets" in md and "### Rows" in md and "**Quick run**" in md
    assert md.count("| conv 2×2×5×5, 3 filters 3×3, correct |") == 2 and "dense tanh 16×16, dW[3, 11] off by 1e-03·max" in md
    assert "```text" in md  # the failing char-RNN message
    rows = speed.targets(result)
    assert [t for t, _, _ in rows] == list(speed.TARGETS.values())
    by_target = {t: ok for t, _, ok in rows}
    assert by_target[speed.TARGETS["dense1000"]] == "not measured"   # not in a quick run
    assert by_target[speed.TARGETS["recurrent"]] == "not measured"   # only the conv ran
    for ok in by_target.values():
        assert ok in ("**met**", "**not met**", "not measured")
    for t in ("dense64", "charrnn", "tiny"):
        assert by_target[speed.TARGETS[t]] != "not measured"
    path = speed.dump(result, tmp_path / "speed.json")
    data = json.loads(path.read_text())["speed"]
    assert len(data["rows"]) == len(result.rows) and len(data["targets"]) == len(rows)
    assert data["rows"][0]["speedup_vs_fd_floor"] > 0
    again = speed.SpeedResult.from_dict(data)
    assert speed.render(again) == md and speed.targets(again) == rows


def test_fd_floor_extrapolates_only_big_problems() -> None:
    calls = 0

    def loss() -> None:
        nonlocal calls
        calls += 1

    small = speed.fd_floor(loss, 10, max_calls=50)
    assert not small.extrapolated and small.calls == 22 and calls == 22 + 2
    big = speed.fd_floor(loss, 10_000, min_calls=5, max_calls=10, min_s=0.0)
    assert big.extrapolated and 5 <= big.calls <= 10 and big.needed == 20_002
    assert big.seconds == pytest.approx(big.per_call_s * 20_002)


def test_numpy_only_forward_has_no_autodiff_reference() -> None:
    layer, params, x = dense.make_case(np.random.default_rng(0), batch=2, d_in=3, d_out=2)
    out, res = gradcheck_outcome(Case("np-only", speed.NumpyOnly(layer), params, x), "gc auto",
                                 jax_twin=False)
    assert out.status == "pass" and res is not None
    assert "autodiff" not in res.references
    _, res_twin = gradcheck_outcome(Case("np-only", speed.NumpyOnly(layer), params, x), "gc auto")
    assert res_twin is not None and res_twin.jax_source == "twin"
    _, res_api = gradcheck_outcome(Case("api", layer, params, x), "gc auto")
    assert res_api is not None and "autodiff" in res_api.references


def test_quick_problems_skip_the_million_parameter_layer() -> None:
    groups = {p.group for p in speed.problems(quick=True)}
    assert groups == set(speed.GROUPS) - {"dense1000"}


def test_main_writes_markdown_and_json(tmp_path: Path) -> None:
    md, js = tmp_path / "speed.md", tmp_path / "speed.json"
    out = speed.main(["--quick", "--only", "tiny", "--no-fresh", "--out", str(md), "--json", str(js)],
                     log=lambda s: None)
    assert out == md and md.read_text().startswith("# gradcheck speed")
    assert json.loads(js.read_text())["speed"]["rows"][0]["group"] == "tiny"
    again = speed.main(["--render-from", str(js), "--out", str(tmp_path / "again.md")],
                       log=lambda s: None)
    assert again.read_text() == md.read_text()
