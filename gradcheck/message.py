"""The one renderer of mismatch messages, from the result records (the versioned schema).

It reads the plain records of :meth:`gradcheck.CheckResult.to_dict` — the same ones the JSON
report holds — so the terminal, a raised :class:`~gradcheck.GradientMismatch` and a report's
drill-down can say the same thing.  It imports nothing of the engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["advice", "blame_text", "leaf_text", "mismatch_text"]

_BLAME_TEXT = {
    "hand": "the hand-derived backward (the references agree with each other)",
    "numeric": "finite differences (a kink, the step, or round-off), not the hand gradient",
    "autodiff": "the autodiff reference: the JAX twin computes a different function than the "
    "forward (hand and finite differences agree)",
    "all": "undecided: hand, finite differences and autodiff all disagree",
}
def _ranges(indices: Sequence[Any]) -> str:
    """``0–2, 5``: sorted integer indices as ranges."""
    runs: list[list[int]] = []
    for i in sorted({int(i) for i in indices}):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in runs)


def _where(d: Mapping[str, Any], word: str) -> str:
    indices = [i for i in d.get("indices") or [] if not isinstance(i, list)]
    if not indices:
        return f"some {word}s"
    return f"{word}{'s' if len(indices) > 1 else ''} {_ranges(indices)}"


def _entries(d: Mapping[str, Any]) -> str:
    shown = [list(i) for i in (d.get("indices") or [])[:3] if isinstance(i, list)]
    return ", ".join(map(str, shown)) or "the entries shown"


def advice(leaf: Mapping[str, Any], kind: str | None = None) -> str:
    """What to do about a leaf that did not pass (a leaf record of the result schema), in one
    sentence that holds for its data: the counts, indices and factor it names are the leaf's own.
    ``kind`` is the check's (``check_jvp`` says "JVP" where a gradient check says "backward").
    ``""`` when there is nothing specific to say."""
    name = leaf["name"]
    d = leaf.get("diagnosis")
    notes = leaf.get("notes") or []
    if leaf.get("blame") == "hand" and isinstance(d, Mapping):
        n_bad, n = leaf.get("n_mismatched", 0), leaf.get("n_checked", 0)
        factor = d.get("factor")
        text = {
            "zero": f"Check that {name}'s gradient is written (not left at zeros) and every term "
                    "reaches it.",
            "sign_flip": f"Check the sign of the {name} term in the backward (δ = y − d, not d − y).",
            "scale": f"Look for a constant factor of {_fmt(factor)} in {name}'s backward: a ½ of SSE, "
                     "a 1/batch of a mean, a term counted twice.",
            "transpose": f"{name}'s gradient has its axes swapped: compare the order of the outer "
                         "product with the forward's matmul.",
            "shift": f"Check the time index in the BPTT loop for {name} (t vs t−1 / t+1).",
            "clipped": f"The backward clips {name}'s gradient: check unclipped gradients, then clip.",
            "time_steps": f"Check {_where(d, 'time step')} of the BPTT loop for {name} (axis "
                          f"{d.get('axis')}): the other steps agree.",
            "rows": f"Only {_where(d, 'row')} of {name} are wrong: check the loop or slice that "
                    "fills them.",
            "columns": f"Only {_where(d, 'column')} of {name} are wrong: check the loop or slice "
                       "that fills them.",
            "entries": f"Only {n_bad} of {n} entries of {name} are wrong ({_entries(d)}): check "
                       "indexing and boundary cases.",
            "scattered": f"{n_bad} of {n} entries of {name} are wrong with no row, column or step "
                         f"pattern: re-derive {name}'s backward term by term against the forward.",
            "widespread": f"Re-derive {name}'s backward term by term against the forward.",
            "sampled": f"{name} is wrong at {n_bad} of {n} measured entries: re-derive its "
                       "backward, or run mode='full' to see which rows, columns or steps are wrong.",
            "single": f"{name} has one entry and it is wrong: check the term of the backward that "
                      "writes it (one number shows no pattern).",
        }.get(str(d.get("kind")), "")
        return text.replace("backward", _word(kind)) if kind in _KINDS else text
    if leaf.get("verdict") == "inconclusive" and any(str(n).startswith("time budget") for n in notes):
        return "Give the check more time (budget=), or screen it (mode='directional')."
    if leaf.get("verdict") == "inconclusive":
        return ("Make the forward smooth at this point (move off kinks), or pass a JAX twin with "
                "jax_fun= for a third source.")
    return ""


def blame_text(blame: str | None, kind: str | None = None) -> str:
    """Who is wrong, in words (``blame`` of a leaf record, in a check of ``kind``)."""
    text = _BLAME_TEXT.get(blame or "", "none")
    return text.replace("backward", _word(kind)) if kind in _KINDS else text


#: What a check of each kind calls the hand-derived code, and how it heads a leaf's block.
_KINDS = {
    "check_jvp": ("JVP", "Jᵀȳ for {name}, column by column"),
    "check_hvp": ("H·v product", "H·v for {name}"),
    "check_batched": ("per-example gradient", "per-example dℓ_b/d{name}"),
}


def _word(kind: str | None) -> str:
    """``backward``, or what the hand-derived code of a check of ``kind`` is."""
    return _KINDS[kind][0] if kind in _KINDS else "backward"


def _heading(leaf: Mapping[str, Any], kind: str | None) -> str:
    return _KINDS[kind][1].format(name=leaf["name"]) if kind in _KINDS else f"dL/d{leaf['name']}"


def _fmt(x: Any) -> str:
    """A number as the result records hold it (JSON: NaN/Inf as strings), 6 significant digits."""
    return "n/a" if x is None else f"{float(x):.6g}"


def _directional_lines(leaf: Mapping[str, Any], kind: str | None) -> list[str]:
    probes = leaf["probes"]
    bad = sum(p["status"] != "ok" for p in probes)
    head = (f"{_heading(leaf, kind)} ({leaf['dtype']}, shape {tuple(leaf['shape'])}): {bad} of "
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


def _entry_lines(leaf: Mapping[str, Any], kind: str | None) -> list[str]:
    tol = leaf["tolerance"]
    head = (f"{_heading(leaf, kind)} ({leaf['dtype']}, shape {tuple(leaf['shape'])}): "
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


def leaf_text(leaf: Mapping[str, Any], seed: int, references: Sequence[str],
              kind: str | None = None) -> str:
    """The message for one leaf that did not pass (a leaf record of the result schema): what,
    where, how far off, who, what to do."""
    directional = leaf["mode"] == "directional" and not leaf["worst"]
    lines = _directional_lines(leaf, kind) if directional else _entry_lines(leaf, kind)
    diagnosis = leaf.get("diagnosis")
    if diagnosis is not None:
        lines.append(f"  diagnosis: {diagnosis['summary']}")
    lines.append(f"  verdict: {leaf['verdict']}; blame: {blame_text(leaf['blame'], kind)}")
    if len(references) < 2:
        lines.append("  (two sources only: hand against " + ", ".join(references) + ")")
    lines.extend(f"  note: {n}" for n in leaf["notes"])
    hint = advice(leaf, kind)
    if hint:
        lines.append("  " + hint)
    lines.append(f"  reproduce with seed={seed}")
    return "\n".join(lines)


def mismatch_text(result: Mapping[str, Any]) -> str:
    """The text of :class:`~gradcheck.GradientMismatch` for a check's record (``to_dict()`` of a
    :class:`~gradcheck.CheckResult`, or a row of a JSON report): one block per leaf that did not
    pass, the worst entries only (never a whole Jacobian), then the check's notes."""
    blocks = [
        leaf_text(leaf, result["seed"], result["references"], result.get("kind"))
        for leaf in result["leaves"]
        if leaf["verdict"] != "pass"
    ]
    head = f"{result['kind']} {result['name']!r}: {result['verdict']}"
    tail = [f"note: {n}" for n in result["notes"]]
    return "\n".join([head, *blocks, *tail])
