"""Assertions shared by the twin style modules (not user code: never reached by a forward)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def assert_twin_pass(r: Any) -> None:
    """The correct code passes, with JAX autodiff from the automatic twin as a reference."""
    assert r.verdict == "pass", r.message() + "\nnotes: " + repr(r.notes)
    assert "autodiff" in r.references, r.notes
    assert r.jax_source == "twin", (r.jax_source, r.notes)
    assert r.to_dict()["jax_source"] == "twin"


def assert_hand_blamed(r: Any, leaf: str, entries: Iterable[tuple[int, ...]] | None = None,
                       *, only: Iterable[str] | None = None) -> Any:
    """``leaf`` fails with the blame on the hand gradient, by all three sources; ``entries`` (when
    given) are among its worst; ``only`` (when given) is the exact set of failing leaves."""
    assert r.verdict == "fail", r
    assert r.jax_source == "twin", (r.jax_source, r.notes)
    assert "numeric" in r.references and "autodiff" in r.references, r.references
    got = r.leaf(leaf)
    assert got.verdict == "fail", (leaf, got.verdict, r.message())
    assert got.blame == "hand", (leaf, got.blame, r.message())
    if only is not None:
        assert {x.name for x in r.failures} == set(only), [x.name for x in r.failures]
    if entries is not None:
        worst = wrong_entries(got)
        for entry in entries:
            assert tuple(entry) in worst, (entry, sorted(worst))
    return got


def wrong_entries(leaf: Any) -> set[tuple[int, ...]]:
    """The indices among ``leaf.worst`` where the hand gradient is the wrong source."""
    return {tuple(int(i) for i in e.index) for e in leaf.worst if e.status == "hand"}


#: Python's warnings machinery adds ``__warningregistry__`` to the globals of the module whose
#: code a (C-level) warning is attributed to, e.g. when the forward is first tried on JAX arrays;
#: that is bookkeeping, not a change to the user's module.
_BOOKKEEPING = frozenset({"__warningregistry__"})


def snapshot(namespace: dict[str, Any]) -> dict[str, Any]:
    """Names → (id, copy of the value where it is an array) of a module's globals."""
    out = {}
    for k, v in namespace.items():
        if k in _BOOKKEEPING:
            continue
        out[k] = (id(v), v.copy() if isinstance(v, np.ndarray) else None)
    return out


def assert_unchanged(namespace: dict[str, Any], before: dict[str, Any]) -> None:
    """The module's globals are the same objects as before (arrays with the same values), and
    ``np`` is still numpy."""
    keys = namespace.keys() - _BOOKKEEPING
    assert keys == before.keys(), keys ^ before.keys()
    for k, (ident, value) in before.items():
        assert id(namespace[k]) == ident, k
        if value is not None:
            np.testing.assert_array_equal(namespace[k], value)
            assert type(namespace[k]) is np.ndarray, k
    if "np" in namespace:
        assert namespace["np"] is np
