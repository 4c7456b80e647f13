"""``@pytest.mark.gradcheck(...)``: the per-test options of the ``gradcheck`` fixture's checks.

A marker's values go through :func:`gradcheck.options.normalise`, the validator of the check
functions themselves, so a bad value reads the same in a marker as in a call.  Nothing here
imports JAX, hypothesis or a template engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from gradcheck.errors import InvalidArgument
from gradcheck.options import normalise, unknown

__all__ = ["MARKER_KEYS", "MarkerError", "marker_options"]

#: The keys ``@pytest.mark.gradcheck(...)`` accepts.
MARKER_KEYS = ("atol", "jax_twin", "mode", "references", "rtol", "seed")


class MarkerError(ValueError):
    """A ``@pytest.mark.gradcheck`` marker with an unknown key or a bad value."""


def _value(key: str, value: Any) -> Any:
    """One marker value, checked and normalised as a call's option would be."""
    if key not in MARKER_KEYS:
        raise MarkerError(unknown(key, MARKER_KEYS, noun="key"))
    try:
        return normalise(key, value)
    except InvalidArgument as exc:
        raise MarkerError(str(exc)) from None


def marker_options(markers: Iterable[pytest.Mark]) -> dict[str, Any]:
    """Merge ``gradcheck`` markers given closest first (the closest wins) and validate them.

    Raises:
        MarkerError: a positional argument, an unknown key or a bad value; the message says
            which and lists the keys.
    """
    merged: dict[str, Any] = {}
    for mark in reversed(list(markers)):
        if mark.args:
            raise MarkerError(
                f"takes keyword options only, got positional {mark.args!r}; "
                f"keys are {', '.join(MARKER_KEYS)}"
            )
        for key, value in mark.kwargs.items():
            merged[key] = _value(key, value)
    return merged
