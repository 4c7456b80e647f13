"""Stage inputs for the stage modules' unit tests, built the way ``check._run`` builds them."""

from __future__ import annotations

from typing import Any

from gradcheck import problem, references
from gradcheck.measure import Leaf, Run, leaf
from gradcheck.options import validate


def make_run(fun: Any, grad: Any, params: Any, *args: Any, **options: Any) -> Run:
    """The run of ``check_grad(fun, grad, params, *args, **options)`` up to its references."""
    opts = validate(options)
    prob = problem.grad_problem(fun, grad, params, args, opts)
    return Run(prob, references.build(prob, opts), opts)


def first_leaf(run: Run) -> Leaf:
    """The run's first leaf with its hand gradient."""
    hand = run.problem.hand[0]
    assert hand is not None
    return leaf(run, 0, hand)


def planted(entries: list[tuple[int, int]], rel: float) -> Any:
    """The tanh layer's hand gradient with ``rel · max|g|`` added at each of ``entries`` of W."""
    from tests.gradcheck import _functions as F

    def bad(p: dict[str, Any], x: Any, v: Any) -> dict[str, Any]:
        g = F.tanh_layer_grad(p, x, v)["W"]
        scale = float(abs(g).max())
        for e in entries:
            g[e] += rel * scale
        return {"W": g}
    return bad


def assert_clear_error(call: Any, error: type[Exception], parts: list[str]) -> None:
    """``call()`` raises ``error``, a GradcheckError whose message holds every one of ``parts``."""
    import pytest

    import gradcheck as gc

    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, gc.GradcheckError)
    for part in parts:
        assert part in str(info.value), f"{part!r} not in: {info.value}"
