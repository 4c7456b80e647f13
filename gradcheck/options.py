"""The options every check understands, and the one validator of them.

:func:`validate` turns the keyword options of :func:`gradcheck.check_grad` /
:func:`gradcheck.check_layer` into a frozen :class:`CheckOptions`; :func:`normalise` checks one
value, and is what the pytest plugin's ``@pytest.mark.gradcheck(...)`` markers go through too, so
a bad value reads the same wherever it was given.  Nothing here imports JAX.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from gradcheck.errors import InvalidArgument

__all__ = ["MODES", "REFERENCES", "CheckOptions", "Mode", "normalise", "validate"]

Mode = Literal["auto", "full", "directional"]
MODES: tuple[str, ...] = ("auto", "full", "directional")
REFERENCES: tuple[str, ...] = ("numeric", "autodiff")


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """Options every check understands (keyword-only at the public functions).

    Attributes:
        mode: ``"full"`` checks every element (autodiff-led above ``full.FULL_NUMERIC_MAX``
            entries when a JAX reference exists, see there); ``"directional"`` compares directional
            derivatives along ``probes`` seeded Gaussian directions; ``"auto"`` measures every
            entry of a tensor of at most ``full_max`` elements by finite differences, and a
            larger one autodiff-led when a JAX reference exists (every entry compared with
            autodiff, finite differences at a seeded sample, along probes and where they
            disagree), by directional screening otherwise (then group testing names the wrong
            entries of a tensor that fails) — so its cost does not grow with the size.
        references: which references to use, a subset of ``("numeric", "autodiff")``.
        jax_fun: a JAX twin of the forward with the same signature (``fun(params, *args)`` for
            check_grad, ``forward(params, x)`` for check_layer).
        jax_twin: ``"auto"`` (default): when the forward does not run on JAX arrays and no
            ``jax_fun`` is given, gradcheck builds a JAX twin of the plain numpy code itself
            (:mod:`gradcheck.twin`) and, once its loss and a finite-difference spot check agree
            with the numpy forward, uses it as the autodiff reference; ``False``: never.
        rtol: relative tolerance override, a float or ``{dtype: float}``.
        atol: absolute tolerance override, a float or ``{dtype: float}``.
        seed: the only source of randomness (probes, dy, noise directions).
        name: a label for reports and messages.
        probes: number of directional probes per leaf.
        worst: how many worst entries to keep per leaf.
        time_axis: the axis of a sequence leaf that is time (for shift / time-step diagnoses);
            ``None`` for no time axis; ``"auto"`` (default) reads it from the code
            (:mod:`gradcheck.timeaxis`: a shape like ``(N, T, D)`` in a docstring, a batched
            state ``h0``), else takes axis 0, as the reference zoo's ``(T, B, D)``, and a failing
            sequence leaf's record says so.
        full_max: in ``auto`` mode, a tensor of at most this many elements has a finite
            difference at every entry; larger ones are autodiff-led or screened (see ``mode``).
        localise_max: in ``auto`` mode, a leaf that fails screening is re-checked in full when
            it has at most this many elements.
        complex_step: ``None`` probes whether the forward is complex-safe, ``False`` never
            uses the complex step.
        batch: ``True`` evaluates large sets of finite differences (at least
            ``numeric.BATCH_MIN`` moves) in compiled batches — ``jax.jit`` of ``jax.vmap`` of the
            same forward on JAX arrays — when the forward runs on JAX arrays and computes the
            numpy forward's value; they are then central differences.  It pays off for forwards
            dominated by Python overhead (long recurrences of small cells), not for large dense
            layers, whose batched matmuls are slower than numpy's one at a time.
        budget: seconds of wall time the check may spend measuring (``None``: no limit).  When it
            is spent, the entries not yet measured are not verified: the check ends with an
            honest ``inconclusive`` (or ``fail`` where a wrong entry was already found) and says
            how many entries of each tensor were verified.  Long checks log their progress on
            the ``gradcheck`` logger.
    """

    mode: Mode = "auto"
    references: tuple[str, ...] = REFERENCES
    jax_fun: Callable[..., Any] | None = None
    jax_twin: Literal["auto"] | bool = "auto"
    rtol: float | Mapping[Any, float] | None = None
    atol: float | Mapping[Any, float] | None = None
    seed: int = 0
    name: str | None = None
    probes: int = 3
    worst: int = 5
    time_axis: int | Literal["auto"] | None = "auto"
    full_max: int = 16
    localise_max: int = 16384
    complex_step: bool | None = None
    batch: bool = False
    budget: float | None = None

    def summary(self) -> dict[str, Any]:
        """The options as plain JSON values, for the report."""
        def plain(v: Any) -> Any:
            if isinstance(v, Mapping):
                return {str(np.dtype(k)): float(x) for k, x in v.items()}
            if callable(v):
                return getattr(v, "__qualname__", repr(v))
            return list(v) if isinstance(v, tuple) else v

        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}


KNOWN: tuple[str, ...] = tuple(sorted(f.name for f in fields(CheckOptions)))


#: The names a tolerance mapping's misspelt dtype key is matched against for a hint.
_DTYPE_NAMES: tuple[str, ...] = ("float16", "float32", "float64", "complex64", "complex128",
                                "half", "single", "double")


def _is_dtype(key: Any) -> bool:
    try:
        return np.dtype(key).kind in "fc"
    except (TypeError, ValueError):
        return False


def _is_number(v: Any) -> bool:
    """A finite non-negative real number (not a bool)."""
    return bool(isinstance(v, int | float | np.integer | np.floating)
                and not isinstance(v, bool | np.bool_) and math.isfinite(v) and v >= 0)


def _tolerance_entry(key: str, value: Mapping[Any, Any], k: Any, x: Any) -> None:
    """One ``{dtype: number}`` entry of a tolerance mapping, or an error naming the option, the
    key and the value (with the closest dtype name for a misspelt key)."""
    if not _is_dtype(k):
        close = difflib.get_close_matches(str(k), _DTYPE_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InvalidArgument(
            f"{key}={value!r}: the key {k!r} is not a float dtype{hint}; the keys of {key} "
            "are float dtypes such as 'float32' or np.float64"
        )
    if not _is_number(x):
        raise InvalidArgument(
            f"{key}={value!r}: {key}[{k!r}]={x!r} is not a non-negative finite float"
        )


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _mode(value: Any) -> Any:
    if value not in MODES:
        raise InvalidArgument(f"mode={value!r}: expected one of {', '.join(MODES)}")
    return value


def _references(value: Any) -> tuple[str, ...]:
    refs = (value,) if isinstance(value, str) else value
    if not isinstance(refs, Sequence) or not refs or any(r not in REFERENCES for r in refs):
        raise InvalidArgument(f"references={value!r}: expected one or both of {REFERENCES}")
    return tuple(refs)


def _tolerance(key: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, Mapping) and value:
            for k, x in value.items():
                _tolerance_entry(key, value, k, x)
            return dict(value)
        if not _is_number(value):
            raise InvalidArgument(f"{key}={value!r}: expected a non-negative float or {{dtype: float}}")
        return value.item() if isinstance(value, np.generic) else value
    return check


def _seed(value: Any) -> int:
    if not _is_int(value) or value < 0:
        raise InvalidArgument(f"seed={value!r}: expected a non-negative int")
    return int(value)


def _positive(key: str) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if not _is_int(value) or value < 1:
            raise InvalidArgument(f"{key}={value!r}: expected a positive int")
        return int(value)
    return check


def _one_of(key: str, allowed: tuple[Any, ...], words: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not any(value is a for a in allowed):
            raise InvalidArgument(f"{key}={value!r}: expected {words}")
        return value
    return check


def _time_axis(value: Any) -> int | str | None:
    if value == "auto" and isinstance(value, str):
        return "auto"
    if value is not None and not _is_int(value):
        raise InvalidArgument(f"time_axis={value!r}: expected an int, None or 'auto'")
    return None if value is None else int(value)


def _budget(value: Any) -> float | None:
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating)
            or not math.isfinite(value) or value < 0):
        raise InvalidArgument(f"budget={value!r}: expected seconds, a non-negative float, or None")
    return float(value)


def _jax_fun(value: Any) -> Any:
    if value is not None and not callable(value):
        raise InvalidArgument(f"jax_fun={value!r} is not callable")
    return value


def _jax_twin(value: Any) -> Any:
    if value is True or value == "auto":
        return "auto"
    if value is False:
        return False
    raise InvalidArgument(f"jax_twin={value!r}: expected 'auto' or False")


def _name(value: Any) -> Any:
    return value if value is None else str(value)


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "mode": _mode,
    "references": _references,
    "jax_fun": _jax_fun,
    "jax_twin": _jax_twin,
    "rtol": _tolerance("rtol"),
    "atol": _tolerance("atol"),
    "seed": _seed,
    "name": _name,
    "probes": _positive("probes"),
    "worst": _positive("worst"),
    "time_axis": _time_axis,
    "full_max": _positive("full_max"),
    "localise_max": _positive("localise_max"),
    "complex_step": _one_of("complex_step", (None, True, False), "None, True or False"),
    "batch": _one_of("batch", (True, False), "True or False"),
    "budget": _budget,
}


def normalise(key: str, value: Any) -> Any:
    """One option's value, checked and in its canonical form (``references="numeric"`` becomes
    ``("numeric",)``).

    Raises:
        InvalidArgument: the value is not one the option takes; the message names the option,
            the value and what it expects.
    """
    return _CHECKS[key](value)


def unknown(key: str, keys: Sequence[str] = KNOWN, noun: str = "option") -> str:
    """The message for an option (a marker's key) that does not exist, with the closest name."""
    close = difflib.get_close_matches(key, list(keys), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {noun} {key!r}{hint}; {noun}s are {', '.join(keys)}"


def validate(options: Mapping[str, Any]) -> CheckOptions:
    """Validate keyword options at the public boundary, one clear error per bad option.

    Examples:
        >>> validate({"mode": "full", "references": "numeric"}).references
        ('numeric',)
    """
    for key in options:
        if key not in _CHECKS:
            raise InvalidArgument(unknown(key))
    return CheckOptions(**{key: normalise(key, value) for key, value in options.items()})
