"""The ``gradcheck`` fixture: the checks of :mod:`gradcheck`, recorded into the running test.

The check functions are imported when a check runs, not here, so that loading the plugin
imports no JAX; hypothesis is looked up in ``sys.modules`` only while a check runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gradcheck.session.records import Entry, base_row

if TYPE_CHECKING:
    from gradcheck.result import CheckResult
    from gradcheck.session.merge import GradcheckSession

__all__ = ["Recorder"]


class Recorder:
    """The ``gradcheck`` fixture: the checks of :mod:`gradcheck`, recorded and strict.

    Each call merges its options over the test's ``@pytest.mark.gradcheck`` options and the
    run-wide ``--gradcheck-*`` / ``gradcheck_*`` settings (mode, seed, rtol, atol, jax_twin;
    call > marker > command line > ini), records the outcome, and raises
    :class:`gradcheck.GradientMismatch` on a verdict other than ``"pass"``.  The check methods
    hide their frames from pytest tracebacks (``__tracebackhide__``), so a mismatch's traceback
    ends at the test's own line.  The fixture is session-scoped (it finds the running test
    through the session), so hypothesis ``@given`` tests use it without a
    ``function_scoped_fixture`` health check.
    """

    def __init__(self, session: GradcheckSession) -> None:
        self._session = session

    def __repr__(self) -> str:
        # hypothesis prints it in a falsifying example; gradcheck.session.falsifying drops it again
        return "<gradcheck fixture>"

    def options(self, **call: Any) -> dict[str, Any]:
        """The options a check of the current test would run with, for ``call`` options."""
        record = self._session.current
        marker = record.options if record is not None else {}
        return {**self._session.settings.defaults(), **marker, **call}

    def _run(self, kind: str, name: str, run: Callable[[], Any], to_row: Callable[[Any], dict[str, Any]]
             ) -> Any:
        """Run one check and record its row (or an ``error`` row for what it raised, re-raised)."""
        record = self._session.current
        example = record.current_example() if record is not None else None
        start = time.perf_counter()
        try:
            out = run()
        except Exception as exc:
            if record is not None:
                row = base_row(name, kind, "error")
                row["error"] = f"{type(exc).__name__}: {exc}"
                row["seconds"] = round(time.perf_counter() - start, 4)
                record.entries.append(Entry(row, example))
            raise
        if record is not None:
            row = to_row(out)
            row["seconds"] = round(time.perf_counter() - start, 4)
            record.entries.append(Entry(row, example))
        return out

    def check_grad(self, fun: Callable[..., Any], grad: Callable[..., Any], params: Any, *args: Any,
                   **options: Any) -> CheckResult:
        """:func:`gradcheck.check_grad`, recorded; raises ``GradientMismatch`` unless it passes."""
        __tracebackhide__ = True  # a failing test's traceback ends at the test's line
        from gradcheck.check import check_grad

        opts = self.options(**options)
        name = str(opts.get("name") or getattr(fun, "__name__", "fun"))
        res: CheckResult = self._run("check_grad", name,
                                     lambda: check_grad(fun, grad, params, *args, **opts),
                                     _check_row)
        return res.raise_for_failure()

    def check_layer(self, layer: Any, params: Any, x: Any, **options: Any) -> CheckResult:
        """:func:`gradcheck.check_layer`, recorded; raises ``GradientMismatch`` unless it passes."""
        __tracebackhide__ = True  # a failing test's traceback ends at the test's line
        from gradcheck.check import check_layer

        opts = self.options(**options)
        own = vars(layer).get("__name__") if hasattr(layer, "__dict__") else None  # an adapter's
        name = str(opts.get("name") or own or type(layer).__name__)
        res: CheckResult = self._run("check_layer", name, lambda: check_layer(layer, params, x, **opts),
                                     _check_row)
        return res.raise_for_failure()

    def check_jvp(self, fun: Callable[..., Any], jvp: Callable[..., Any], params: Any, *args: Any,
                  **options: Any) -> CheckResult:
        """:func:`gradcheck.check_jvp`, recorded; raises ``GradientMismatch`` unless it passes."""
        __tracebackhide__ = True
        from gradcheck.jvp import check_jvp

        opts = self.options(**options)
        name = str(opts.get("name") or getattr(fun, "__name__", "fun"))
        res: CheckResult = self._run("check_jvp", name,
                                     lambda: check_jvp(fun, jvp, params, *args, **opts), _check_row)
        return res.raise_for_failure()

    def check_layer_jvp(self, layer: Any, params: Any, x: Any, **options: Any) -> CheckResult:
        """:func:`gradcheck.check_layer_jvp`, recorded; raises ``GradientMismatch`` unless it passes."""
        __tracebackhide__ = True
        from gradcheck.jvp import check_layer_jvp

        opts = self.options(**options)
        own = vars(layer).get("__name__") if hasattr(layer, "__dict__") else None
        name = str(opts.get("name") or own or type(layer).__name__)
        res: CheckResult = self._run("check_jvp", name,
                                     lambda: check_layer_jvp(layer, params, x, **opts), _check_row)
        return res.raise_for_failure()

    def check_hvp(self, fun: Callable[..., Any], hvp: Callable[..., Any], params: Any, *args: Any,
                  grad: Callable[..., Any] | None = None, **options: Any) -> CheckResult:
        """:func:`gradcheck.check_hvp`, recorded; raises ``GradientMismatch`` unless it passes."""
        __tracebackhide__ = True
        from gradcheck.hvp import check_hvp

        opts = self.options(**options)
        name = str(opts.get("name") or getattr(hvp, "__name__", "hvp"))
        res: CheckResult = self._run("check_hvp", name,
                                     lambda: check_hvp(fun, hvp, params, *args, grad=grad, **opts),
                                     _check_row)
        return res.raise_for_failure()

    def check_batched(self, loss: Callable[..., Any], per_example_grad: Callable[..., Any], params: Any,
                      batch: Any, *args: Any, axis: int = 0, **options: Any) -> CheckResult:
        """:func:`gradcheck.check_batched`, recorded; raises ``GradientMismatch`` unless it passes."""
        __tracebackhide__ = True
        from gradcheck.batched import check_batched

        opts = self.options(**options)
        name = str(opts.get("name") or getattr(loss, "__name__", "loss"))
        res: CheckResult = self._run(
            "check_batched", name,
            lambda: check_batched(loss, per_example_grad, params, batch, *args, axis=axis, **opts),
            _check_row)
        return res.raise_for_failure()

    def gradient_flow(self, model: Any, params: Any, x: Any, **options: Any) -> Any:
        """:func:`gradcheck.gradient_flow`, recorded as a ``gradient_flow`` row.

        Only ``seed`` and a number ``rtol`` are taken from the marker and the command line (the
        other check options mean nothing to a flow).  Raises ``GradientMismatch`` when the hand
        BPTT deltas disagree with autodiff.
        """
        __tracebackhide__ = True  # a failing test's traceback ends at the test's line
        from gradcheck.dynamics import gradient_flow

        opts = {**_flow_options(self.options()), **options}
        name = str(opts.get("name") or type(model).__name__)
        flow = self._run("gradient_flow", name, lambda: gradient_flow(model, params, x, **opts), _flow_row)
        if flow.rel_err.size and not flow.agree:
            from gradcheck.errors import GradientMismatch

            worst = float(max(flow.rel_err))
            raise GradientMismatch(
                f"gradient_flow {flow.name!r}: the hand deltas ∂L/∂h_t disagree with autodiff "
                f"(worst relative error {worst:.3g} > rtol={flow.rtol:.3g})"
            )
        return flow

    def record(self, result: CheckResult) -> CheckResult:
        """Record a result computed elsewhere (no raise): for tests that expect a failure."""
        record = self._session.current
        if record is not None:
            record.entries.append(Entry(_check_row(result), record.current_example()))
        return result


def _flow_options(options: dict[str, Any]) -> dict[str, Any]:
    """The inherited options a gradient flow understands: ``seed``, and ``rtol`` unless a table."""
    out: dict[str, Any] = {}
    if "seed" in options:
        out["seed"] = options["seed"]
    rtol = options.get("rtol")
    if isinstance(rtol, int | float) and not isinstance(rtol, bool):
        out["rtol"] = float(rtol)
    return out


def _check_row(res: CheckResult) -> dict[str, Any]:
    return res.to_dict()


def _flow_row(flow: Any) -> dict[str, Any]:
    """A flow as a row: its verdict, and the flow itself under ``flows`` for the report."""
    d: dict[str, Any] = flow.to_dict()
    verdict = "fail" if flow.rel_err.size and not flow.agree else "pass"
    row = base_row(str(flow.name), "gradient_flow", verdict)
    row["flows"] = [d]
    return row
