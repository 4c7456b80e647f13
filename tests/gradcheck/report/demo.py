"""A realistic session document for the report's screenshots and browser tests: real checks of
the reference zoo's layers in four test modules, some with planted bugs of different shapes
(a halved bias gradient, three wrong columns of a 40×30 weight, a transposed weight gradient,
truncated BPTT, a wrong scale of a sequence step), a large tensor that is screened, an error,
and gradient flows through time and depth.

    python -m tests.gradcheck.report.demo reports/demo.html     # writes the page (and .json)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

import gradcheck as gc
import reference.dense
import reference.mlp
import reference.rnn
from gradcheck import report


class _Buggy:
    """A reference layer whose backward is changed by ``edit(dparams, dx) -> (dparams, dx)``."""

    def __init__(self, layer: Any, edit: Any) -> None:
        self.layer, self.edit = layer, edit

    def forward(self, params: Any, x: Any) -> Any:
        return self.layer.forward(params, x)

    def backward(self, params: Any, x: Any, dy: Any) -> Any:
        dparams, dx = self.layer.backward(params, x, dy)
        return self.edit(dict(dparams), dx)


def _halve_bias(dparams: dict[str, Any], dx: Any) -> Any:
    return {**dparams, "b": dparams["b"] / 2}, dx


def _transpose_w1(dparams: dict[str, Any], dx: Any) -> Any:
    return {**dparams, "W1": dparams["W1"].T.copy()}, dx


def _columns_off(dparams: dict[str, Any], dx: Any) -> Any:
    dw = np.array(dparams["W"], copy=True)
    dw[:, 5:8] *= 1.1
    return {**dparams, "W": dw}, dx


def _scale_step(dparams: dict[str, Any], dx: Any) -> Any:
    dx = np.array(dx, copy=True)
    dx[3] *= 0.5
    return dparams, dx


def _row(res: Any, test: str, **extra: Any) -> dict[str, Any]:
    outcome = "passed" if res.passed else "failed"
    return {**res.to_dict(), "test": test, "test_outcome": outcome, **extra}


def _sse(p: dict[str, Any], x: Any) -> Any:
    return 0.5 * np.sum(np.tanh(x @ p["W"]) ** 2)


def _sse_grad(p: dict[str, Any], x: Any) -> dict[str, Any]:
    y = np.tanh(x @ p["W"])
    return {"W": x.T @ (y * (1 - y ** 2))}


def demo_rows() -> list[dict[str, Any]]:
    """The rows of the demo session (about ten seconds of checks)."""
    rng = np.random.default_rng(0)
    rows = []
    for act in ("tanh", "sigmoid"):
        layer, p, x = reference.dense.make_case(rng, activation=act)
        rows.append(_row(gc.check_layer(layer, p, x, name=f"Dense({act})"),
                         f"tests/test_dense.py::test_dense[{act}]"))
    layer, p, x = reference.dense.make_case(rng, d_out=6)
    rows.append(_row(gc.check_layer(_Buggy(layer, _halve_bias), p, x, name="Dense"),
                     "tests/test_dense.py::test_dense_bias_gradient"))
    layer, p, x = reference.dense.make_case(rng, d_in=40, d_out=30)  # 1,200 entries: a pixel map
    rows.append(_row(gc.check_layer(_Buggy(layer, _columns_off), p, x, name="Dense(40→30)"),
                     "tests/test_dense.py::test_dense_wide"))
    big_x = rng.normal(size=(8, 300))
    rows.append(_row(gc.check_grad(_sse, _sse_grad, {"W": rng.normal(size=(300, 300)) * 0.05}, big_x,
                                   references=("numeric",), name="wide tanh layer"),
                     "tests/test_dense.py::test_wide_layer"))

    mlp, p, x = reference.mlp.make_case(rng, sizes=(4, 5, 5, 3))
    rows.append(_row(gc.check_layer(mlp, p, x, name="MLP"), "tests/test_mlp.py::test_mlp"))
    rows.append(_row(gc.check_layer(_Buggy(mlp, _transpose_w1), p, x, name="MLP"),
                     "tests/test_mlp.py::test_mlp_hidden_layer"))
    flow = gc.gradient_flow(mlp, p, x, name="MLP depth 3").to_dict()
    rows.append({"name": "MLP flow", "kind": "gradient_flow", "verdict": "pass", "leaves": [],
                 "flows": [flow], "test": "tests/test_mlp.py::test_mlp_flow", "test_outcome": "passed"})

    rnn, p, x = reference.rnn.make_case(rng, T=6)
    rows.append(_row(gc.check_layer(rnn, p, x, name="ElmanRNN"), "tests/test_rnn.py::test_bptt[tanh]"))
    rows.append(_row(gc.check_layer(_Buggy(rnn, _scale_step), p, x, name="ElmanRNN"),
                     "tests/test_rnn.py::test_bptt_input_gradient"))
    short, p, x = reference.rnn.make_case(rng, T=6, truncation=2)
    rows.append(_row(gc.check_layer(short, p, x, name="ElmanRNN(truncation=2)"),
                     "tests/test_rnn.py::test_truncated_bptt"))
    flows = []
    for scale in (0.5, 1.5):
        rnn, p, x = reference.rnn.make_case(np.random.default_rng(1), T=12, spectral_scale=scale)
        flows.append(gc.gradient_flow(rnn, p, x, name=f"rnn σ={scale}").to_dict())
    rows.append({"name": "rnn flow", "kind": "gradient_flow", "verdict": "pass", "leaves": [],
                 "flows": flows, "test": "tests/test_rnn.py::test_flow", "test_outcome": "passed"})
    rows.append({"name": "lstm", "verdict": "error", "passed": False, "leaves": [],
                 "error": "UserCodeError: LSTM.backward(params, x, dy) raised ValueError: operands "
                          "could not be broadcast together with shapes (3,5) (3,4)",
                 "test": "tests/test_lstm.py::test_lstm", "test_outcome": "failed"})
    return rows


def demo_document() -> dict[str, Any]:
    """The demo session document."""
    return report.session_document(demo_rows(), title="gradcheck — tests/ (pytest -p gradcheck)",
                                   environment={"time": "2026-12-02T12:00:00+00:00"})


def main(argv: list[str]) -> int:
    """Write the demo page to ``argv[0]`` (default ``reports/demo.html``) and its JSON beside it."""
    out = Path(argv[0] if argv else "reports/demo.html")
    doc = demo_document()
    report.write_json(doc, out.with_suffix(".json"))
    report.write_html(doc, out)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
