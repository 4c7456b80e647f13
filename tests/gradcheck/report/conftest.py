"""Real results to report on: a passing and a failing check, an error row, gradient flows."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

import gradcheck as gc
import reference.rnn


def _tanh_sum(p: dict[str, Any]) -> Any:
    return np.sum(np.tanh(p["W"])) + np.sum(p["b"] ** 2)


def _tanh_sum_grad(p: dict[str, Any], *, sign: float = 1.0) -> dict[str, Any]:
    return {"W": sign * (1 - np.tanh(p["W"]) ** 2), "b": 2 * p["b"]}


@pytest.fixture(scope="session")
def params() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"W": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}


@pytest.fixture(scope="session")
def passing(params: dict[str, Any]) -> dict[str, Any]:
    res = gc.check_grad(_tanh_sum, _tanh_sum_grad, params, references=("numeric",), name="tanh/ok")
    assert res.passed
    return res.to_dict()


@pytest.fixture(scope="session")
def failing(params: dict[str, Any]) -> dict[str, Any]:
    res = gc.check_grad(_tanh_sum, lambda p: _tanh_sum_grad(p, sign=-1.0), params,
                        references=("numeric",), name="tanh/sign-bug")
    assert res.verdict == "fail" and res.leaf("W").verdict == "fail" and res.leaf("b").passed
    return res.to_dict()


@pytest.fixture(scope="session")
def flows() -> list[dict[str, Any]]:
    out = []
    for scale in (0.5, 1.5):
        layer, p, x = reference.rnn.make_case(np.random.default_rng(0), T=6, spectral_scale=scale)
        out.append(gc.gradient_flow(layer, p, x, name=f"rnn σ={scale}").to_dict())
    return out


@pytest.fixture
def rows(passing: dict[str, Any], failing: dict[str, Any], flows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One passing and one failing check (2 tensors each), an error row and a flow-only row."""
    return copy.deepcopy([
        {**passing, "test": "tests/test_layers.py::test_ok", "family": "tanh"},
        {**failing, "test": "tests/test_layers.py::test_bug", "family": "tanh"},
        {"name": "raises", "verdict": "error", "passed": False, "leaves": [],
         "error": "UserCodeError: division by zero", "test": "tests/test_layers.py::test_raises"},
        {"name": "rnn flow", "kind": "gradient_flow", "verdict": "pass", "leaves": [], "flows": flows,
         "test": "tests/test_rnn.py::test_flow"},
    ])


#: Agreement-table rows of the ``rows`` fixture: one per tensor, one for each row without tensors.
N_TABLE_ROWS = 2 + 2 + 1 + 1
