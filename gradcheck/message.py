"""The one renderer of mismatch messages, from the result records (the versioned schema).

It reads the plain records of :meth:`gradcheck.CheckResult.to_dict` — the same ones the JSON
report holds — so the terminal, a raised :class:`~gradcheck.GradientMismatch` and a report's
drill-down can say the same thing.  It imports nothing of the engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["leaf_text", "mismatch_text"]

_BLAME_TEXT = {
    "hand": "the hand-derived backward (the references agree with each other)",
    "numeric": "finite differences (a kink, the step, or round-off), not the hand gradient",
    "autodiff": "the autodiff reference: the JAX twin computes a different function than the "
    "forward (hand and finite differences agree)",
    "all": "undecided: hand, finite differences and autodiff all disagree",
}
_ADVICE = {
    "zero": "Check that {leaf}'s gradient is written (not left at zeros) and every term reaches it.",
    "sign_flip": "Check the sign of the {leaf} term in the backward (δ = y − d, not d − y).",
    "scale": "Look for a constant factor in {leaf}'s backward: a ½ of SSE, a 1/batch of a mean, "
    "a term counted twice.",
    "transpose": "{leaf}'s gradient has its axes swapped: compare the order of the outer product "
    "with the forward's matmul.",
    "shift": "Check the time index in the BPTT loop for {leaf} (t vs t−1 / t+1).",
    "clipped": "The backward clips {leaf}'s gradient: check unclipped gradients, then clip.",
    "time_steps": "Check the first/last step of the BPTT loop for {leaf}: the other steps agree.",
    "rows": "Only some rows of {leaf} are wrong: check the loop or slice that fills them.",
    "columns": "Only some columns of {leaf} are wrong: check the loop or slice that fills them.",
    "entries": "Only a few entries of {leaf} are wrong: check indexing and boundary cases.",
    "widespread": "Re-derive {leaf}'s backward term by term against the forward.",
}


def _fmt(x: Any) -> str:
    """A number as the result records hold it (JSON: NaN/Inf as strings), 6 significant digits."""
    return "n/a" if x is None else f"{float(x):.6g}"


def _directional_lines(leaf: Mapping[str, Any]) -> list[str]:
    probes = leaf["probes"]
    bad = sum(p["status"] != "ok" for p in probes)
    head = (f"dL/d{leaf['name']} ({leaf['dtype']}, shape {tuple(leaf['shape'])}): {bad} of "
            f"{len(probes)} directional probes disagree (rtol={leaf['tolerance']['rtol']:g})")
    return [head] + [
        f"  probe seed {p['seed']}: ⟨hand,u⟩={_fmt(p['hand'])}  numeric={_fmt(p['numeric'])}±"
        f"{_fmt(p['numeric_error'])}  autodiff={_fmt(p['autodiff'])}  [{p['status']}]"
        for p in probes[:5]
    ]


def _checked(leaf: Mapping[str, Any]) -> str:
    """"elements", or which ones when not every element was measured one by one."""
    total = int(leaf.get("n_elements", leaf["n_checked"]))
    return "elements" if int(leaf["n_checked"]) >= total else f"measured elements (of {total})"


def _entry_lines(leaf: Mapping[str, Any]) -> list[str]:
    tol = leaf["tolerance"]
    head = (f"dL/d{leaf['name']} ({leaf['dtype']}, shape {tuple(leaf['shape'])}): "
            f"{leaf['n_mismatched']} of {leaf['n_checked']} {_checked(leaf)} outside "
            f"rtol={tol['rtol']:g}, atol={float(tol['atol']):.3g}")
    return [head] + [
        f"  worst at {list(e['index'])}: hand={_fmt(e['hand'])}  numeric={_fmt(e['numeric'])}±"
        f"{_fmt(e['numeric_error'])}  autodiff={_fmt(e['autodiff'])}  [{e['status']}]{_slopes(e)}"
        for e in leaf["worst"]
    ]


def _slopes(e: Mapping[str, Any]) -> str:
    """A wrong entry at a kink: the interval its hand value should lie in."""
    if e.get("left") is None or e.get("right") is None:
        return ""
    lo, hi = sorted((float(e["left"]), float(e["right"])))
    return f"  not differentiable here: one-sided slopes [{lo:.6g}, {hi:.6g}]"


def leaf_text(leaf: Mapping[str, Any], seed: int, references: Sequence[str]) -> str:
    """The message for one leaf that did not pass (a leaf record of the result schema): what,
    where, how far off, who, what to do."""
    directional = leaf["mode"] == "directional" and not leaf["worst"]
    lines = _directional_lines(leaf) if directional else _entry_lines(leaf)
    diagnosis = leaf.get("diagnosis")
    if diagnosis is not None:
        lines.append(f"  diagnosis: {diagnosis['summary']}")
    lines.append(f"  verdict: {leaf['verdict']}; blame: {_BLAME_TEXT.get(leaf['blame'] or '', 'none')}")
    if len(references) < 2:
        lines.append("  (two sources only: hand against " + ", ".join(references) + ")")
    lines.extend(f"  note: {n}" for n in leaf["notes"])
    if leaf["blame"] == "hand" and diagnosis is not None:
        lines.append("  " + _ADVICE.get(diagnosis["kind"], "").format(leaf=leaf["name"]))
    elif leaf["verdict"] == "inconclusive" and any(n.startswith("time budget") for n in leaf["notes"]):
        lines.append("  Give the check more time (budget=), or screen it (mode='directional').")
    elif leaf["verdict"] == "inconclusive":
        lines.append("  Make the forward smooth at this point (move off kinks), or pass a JAX "
                     "twin with jax_fun= for a third source.")
    lines.append(f"  reproduce with seed={seed}")
    return "\n".join(lines)


def mismatch_text(result: Mapping[str, Any]) -> str:
    """The text of :class:`~gradcheck.GradientMismatch` for a check's record (``to_dict()`` of a
    :class:`~gradcheck.CheckResult`, or a row of a JSON report): one block per leaf that did not
    pass, the worst entries only (never a whole Jacobian), then the check's notes."""
    blocks = [
        leaf_text(leaf, result["seed"], result["references"])
        for leaf in result["leaves"]
        if leaf["verdict"] != "pass"
    ]
    head = f"{result['kind']} {result['name']!r}: {result['verdict']}"
    tail = [f"note: {n}" for n in result["notes"]]
    return "\n".join([head, *blocks, *tail])
