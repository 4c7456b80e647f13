"""Hypothesis strategies for gradient checks: arrays, layer cases and recurrent configurations.

Property tests of a backward pass need inputs that finite differences can judge: bounded,
well-scaled floats kept away from the kinks of ReLU, ``abs`` and ``max`` (or placed exactly on
them, on purpose), in every dtype the layer supports.  This module draws them, and draws whole
layer cases from a user's ``make_case(rng, *, dtype, **sizes)`` factory, so that

* every example is rebuilt from an explicit seed (``np.random.default_rng(seed)``), never the
  global RNG;
* shrinking lands on the smallest case: the narrowest widths and the shortest sequence (integer
  strategies shrink to their lower bound), seed 0 and float64;
* a falsifying example prints as the one line that rebuilds it, e.g.
  ``LayerCase(reference.rnn.make_case(np.random.default_rng(0), dtype=np.float32, T=1, B=1))``.

Examples:
    >>> import numpy as np, reference.dense
    >>> from hypothesis import given, settings, strategies as st
    >>> import gradcheck.strategies as gs
    >>> @settings(max_examples=3, deadline=None, database=None)
    ... @given(case=gs.layer_cases(reference.dense.make_case, batch=st.integers(1, 3)))
    ... def test_dense(case):
    ...     assert case.check().passed
    >>> test_dense()
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.strategies import SearchStrategy

from gradcheck.check import check_layer
from gradcheck.errors import InvalidArgument

if TYPE_CHECKING:
    from gradcheck.result import CheckResult

__all__ = ["LayerCase", "RecurrentConfig", "arrays", "layer_cases", "recurrent_configs", "seeds"]

Kinks = Literal["avoid", "allow", "on"]
Factory = Callable[..., tuple[Any, Any, Any]]
Shape = tuple[int, ...]
T = TypeVar("T")

_KINKS = ("avoid", "allow", "on")
_WIDTHS: dict[int, Literal[16, 32, 64]] = {2: 16, 4: 32, 8: 64}
_ACTIVATIONS = ("tanh", "sigmoid", "relu")
_HIDDEN = st.integers(1, 8)
_LENGTH = st.integers(1, 12)
_SPECTRAL_SCALE = st.floats(0.3, 3.0)
_ACTIVATION = st.sampled_from(_ACTIVATIONS)


# ----------------------------------------------------------------------------- validation


def _float_dtype(dtype: Any, what: str = "dtype") -> np.dtype[Any]:
    """``np.dtype(dtype)`` if it is float16/32/64, else InvalidArgument naming ``what``."""
    dt: np.dtype[Any] | None
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.kind != "f" or dt.itemsize not in (2, 4, 8):
        raise InvalidArgument(
            f"{what}={dtype!r}: expected a real floating dtype (np.float16, np.float32 or np.float64)."
        )
    return dt


def _shape(shape: Any) -> Shape:
    """A fixed shape as a tuple of non-negative ints (an int ``n`` means ``(n,)``)."""
    dims = (shape,) if isinstance(shape, int | np.integer) else shape
    ok = isinstance(dims, Sequence) and all(
        isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 0 for d in dims
    )
    if isinstance(shape, bool) or not ok:
        raise InvalidArgument(
            f"shape={shape!r}: expected an int, a tuple of non-negative ints, or a strategy of tuples."
        )
    return tuple(int(d) for d in dims)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _strategy(value: SearchStrategy[T] | T) -> SearchStrategy[T]:
    """A strategy as given; any other value as ``st.just(value)``."""
    return value if isinstance(value, SearchStrategy) else st.just(value)


def _representable(value: float, dt: np.dtype[Any], *, up: bool) -> float:
    """``value`` rounded to ``dt``, towards +inf when ``up`` and towards -inf otherwise."""
    x = dt.type(value)
    if up and float(x) < value:
        x = np.nextafter(x, dt.type(np.inf))
    elif not up and float(x) > value:
        x = np.nextafter(x, dt.type(-np.inf))
    return float(x)


def _qualified_name(factory: Callable[..., Any]) -> str:
    """``module.qualname`` of ``factory``: the name a reproduction line calls it by."""
    qualname = getattr(factory, "__qualname__", None)
    if qualname is None:
        return repr(factory)
    module = getattr(factory, "__module__", None)
    return f"{module}.{qualname}" if module else str(qualname)


# ----------------------------------------------------------------------------- seeds and arrays


def seeds() -> SearchStrategy[int]:
    """Seeds for ``np.random.default_rng``: integers in ``[0, 2**32 - 1]``, shrinking towards 0.

    Returns:
        A strategy of ints.

    Examples:
        >>> from hypothesis import find
        >>> find(seeds(), lambda s: True)
        0
        >>> find(seeds(), lambda s: s >= 10)
        10
    """
    return st.integers(0, 2**32 - 1)


def arrays(
    shape: int | Shape | SearchStrategy[Shape],
    dtype: npt.DTypeLike = np.float64,
    *,
    bound: float | np.floating[Any] = 2.0,
    kinks: Kinks = "avoid",
    margin: float | np.floating[Any] = 0.05,
) -> SearchStrategy[npt.NDArray[Any]]:
    """Bounded, well-conditioned float arrays, kept off (or put on) the kink at 0.

    Every entry lies in ``[-bound, bound]``, is finite and is never subnormal.  ``kinks`` says
    where the entries may sit relative to 0, where ReLU, ``abs`` and ``max`` are not
    differentiable:

    * ``"avoid"`` (default): every ``|value| >= margin``, so a central difference with a step
      below ``margin`` never straddles a kink;
    * ``"on"``: at least one entry is exactly 0 and every other entry is 0 or has
      ``|value| >= margin`` (for testing that kinks are detected and reported);
    * ``"allow"``: anything in range, 0 included.

    Args:
        shape: an int ``n`` (meaning ``(n,)``), a tuple of ints, or a strategy of tuples such as
            ``hypothesis.extra.numpy.array_shapes()``.
        dtype: float16, float32 or float64; values are exactly representable in it.
        bound: the largest ``|value|``, a positive finite float.
        kinks: ``"avoid"``, ``"on"`` or ``"allow"`` (see above).
        margin: the least ``|value|`` of a non-zero entry for ``"avoid"`` and ``"on"``; in
            ``(0, bound]``.

    Returns:
        A strategy of arrays of that shape and dtype.  Entries shrink towards simple values
        (1.0, -1.0, 0.5, ...; towards 0 when 0 is allowed).

    Raises:
        InvalidArgument: a non-float dtype, a bad shape, ``bound`` or ``margin`` out of range,
            an unknown ``kinks``, or ``kinks="on"`` with a shape of size 0.

    Examples:
        >>> import numpy as np
        >>> from hypothesis import find, given, settings
        >>> find(arrays((2, 2)), lambda a: True)
        array([[1., 1.],
               [1., 1.]])
        >>> find(arrays(3, kinks="on"), lambda a: True)
        array([0., 0., 0.])
        >>> @settings(max_examples=20, database=None)
        ... @given(x=arrays((3, 4), np.float32, kinks="avoid", margin=0.1))
        ... def test_relu_away_from_kink(x):
        ...     assert x.dtype == np.float32 and np.all((np.abs(x) >= 0.1) & (np.abs(x) <= 2))
        >>> test_relu_away_from_kink()
    """
    dt = _float_dtype(dtype)
    if kinks not in _KINKS:
        raise InvalidArgument(f"kinks={kinks!r}: expected one of {_KINKS}.")
    lo, hi = _entry_range(dt, bound, margin, kinks)
    shapes = shape if isinstance(shape, SearchStrategy) else _shape(shape)
    if kinks == "on" and isinstance(shapes, tuple) and math.prod(shapes) == 0:
        raise InvalidArgument(f"shape={shape!r} has no entries, so kinks='on' cannot put one at 0.")
    base = hnp.arrays(dt, shapes, elements=_entries(dt, lo, hi, kinks))
    return base if kinks != "on" else _with_a_zero(base, repr(shape))


def _entry_range(dt: np.dtype[Any], bound: Any, margin: Any, kinks: Kinks) -> tuple[float, float]:
    """``(lo, hi)``: ``margin`` rounded up and ``bound`` rounded down to ``dt`` (``lo`` is NaN for a
    non-real margin), after checking both for :func:`arrays`."""
    if not (_is_real(bound) and 0 < bound <= float(np.finfo(dt).max)):
        raise InvalidArgument(f"bound={bound!r}: expected a positive finite float representable in {dt}.")
    hi = _representable(float(bound), dt, up=False)
    lo = _representable(float(margin), dt, up=True) if _is_real(margin) else math.nan
    if kinks != "allow" and not (_is_real(margin) and margin > 0 and lo <= hi):
        raise InvalidArgument(
            f"margin={margin!r}: expected 0 < margin <= bound={bound!r} (in {dt}) for kinks={kinks!r}."
        )
    return lo, hi


def _entries(dt: np.dtype[Any], lo: float, hi: float, kinks: Kinks) -> SearchStrategy[float]:
    """The entries of :func:`arrays`: anything in ``[-hi, hi]`` (``"allow"``), ``lo <= |v| <= hi``
    (``"avoid"``), or that or exactly 0 (``"on"``); never subnormal."""
    width = _WIDTHS[dt.itemsize]
    if kinks == "allow":
        return st.floats(-hi, hi, width=width, allow_subnormal=False)
    positive = st.floats(lo, hi, width=width, allow_subnormal=False)
    elements = positive | positive.map(lambda v: -v)
    return st.just(0.0) | elements if kinks == "on" else elements


@st.composite
def _with_a_zero(draw: st.DrawFn, base: SearchStrategy[npt.NDArray[Any]], shape: str) -> npt.NDArray[Any]:
    """An array from ``base`` with at least one entry set to exactly 0."""
    arr = np.array(draw(base))
    if arr.size == 0:
        raise InvalidArgument(f"shape={shape} drew an empty shape {arr.shape}: kinks='on' needs an entry.")
    arr.flat[draw(st.integers(0, arr.size - 1))] = 0
    return arr


# ----------------------------------------------------------------------------- layer cases


def _dtype_literal(dt: np.dtype[Any]) -> str:
    return f"np.{dt.name}"


@dataclass(frozen=True, eq=False, repr=False)
class LayerCase:
    """A layer, its parameters and an input, drawn from a factory with a recorded seed.

    ``repr(case)`` (which Hypothesis prints for a falsifying example) is the line that rebuilds
    the case, and ``case.source`` is the factory call inside it.  A case unpacks as
    ``layer, params, x = case``.

    Attributes:
        layer: the object with ``forward(params, x)`` and ``backward(params, x, dy)``.
        params: the parameter pytree.
        x: the input array (or pytree).
        seed: the seed of ``np.random.default_rng`` the factory was called with; also the
            ``seed`` of :meth:`check`.
        dtype: the dtype the factory was asked for.
        factory: the factory's qualified name, e.g. ``"reference.rnn.make_case"``.
        kwargs: the other keyword arguments the factory was called with.

    Examples:
        >>> import reference.dense
        >>> from hypothesis import find, strategies as st
        >>> case = find(layer_cases(reference.dense.make_case, batch=st.integers(1, 4)),
        ...             lambda c: c.x.shape[0] >= 2)
        >>> case
        LayerCase(reference.dense.make_case(np.random.default_rng(0), dtype=np.float64, batch=2))
        >>> layer, params, x = case
        >>> x.shape, case.check().passed
        ((2, 4), True)
    """

    layer: Any
    params: Any
    x: Any
    seed: int
    dtype: np.dtype[Any]
    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The factory call that rebuilds ``(layer, params, x)`` exactly (needs ``numpy as np``)."""
        args = [f"np.random.default_rng({self.seed})", f"dtype={_dtype_literal(self.dtype)}"]
        args += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.factory}({', '.join(args)})"

    def __repr__(self) -> str:
        return f"LayerCase({self.source})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        """Hypothesis's pretty printer shows the reproduction line, not the arrays."""
        p.text(repr(self))

    def __iter__(self) -> Iterator[Any]:
        return iter((self.layer, self.params, self.x))

    def check(self, **options: Any) -> CheckResult:
        """Run :func:`gradcheck.check_layer` on this case, seeded by :attr:`seed`.

        Args:
            **options: check options (see :class:`gradcheck.CheckOptions`); ``seed`` overrides
                the case's seed.

        Returns:
            The :class:`~gradcheck.CheckResult`.
        """
        return check_layer(self.layer, self.params, self.x, **{"seed": self.seed, **options})


def _dtypes(dtype: Any) -> SearchStrategy[Any]:
    """A strategy of dtypes from one dtype, a sequence of them (first = shrink target) or a strategy."""
    if isinstance(dtype, SearchStrategy):
        return dtype
    if isinstance(dtype, list | tuple):
        if not dtype:
            raise InvalidArgument("dtype=(): give at least one dtype, e.g. dtype=(np.float64, np.float32).")
        return st.sampled_from([_float_dtype(d) for d in dtype])
    return st.just(_float_dtype(dtype))


def layer_cases(
    factory: Factory,
    *,
    dtype: npt.DTypeLike | Sequence[npt.DTypeLike] | SearchStrategy[Any] = (np.float64, np.float32),
    seed: SearchStrategy[int] | int | None = None,
    **kwargs: Any,
) -> SearchStrategy[LayerCase]:
    """Layer cases ``factory(np.random.default_rng(seed), dtype=dtype, **kwargs)``, drawn and shrunk.

    Each keyword argument is a strategy (drawn) or a plain value (passed as is); the dtype and
    the seed are drawn after them.  Shrinking lands on the smallest case: each integer strategy
    at its lower bound, each ``sampled_from`` at its first element, seed 0 and the first dtype
    (float64 by default).

    Args:
        factory: ``factory(rng, *, dtype, **kwargs) -> (layer, params, x)``, like the
            ``make_case`` functions of the reference zoo.
        dtype: one dtype, a sequence of dtypes (shrinking towards the first), or a strategy.
        seed: a strategy of seeds (default :func:`seeds`) or one fixed seed.
        **kwargs: the factory's other keyword arguments: strategies or values.

    Returns:
        A strategy of :class:`LayerCase`.

    Raises:
        InvalidArgument: ``factory`` is not callable, a dtype is not a float dtype, ``rng`` is
            given as a keyword, or (when drawing) the factory does not return a 3-tuple.

    Examples:
        >>> import reference.rnn
        >>> from hypothesis import find, strategies as st
        >>> cases = layer_cases(reference.rnn.make_case, T=st.integers(1, 12), B=st.integers(1, 4))
        >>> find(cases, lambda c: True)
        LayerCase(reference.rnn.make_case(np.random.default_rng(0), dtype=np.float64, T=1, B=1))
        >>> find(cases, lambda c: c.x.shape[0] >= 3 and c.dtype == np.float32)
        LayerCase(reference.rnn.make_case(np.random.default_rng(0), dtype=np.float32, T=3, B=1))
    """
    if not callable(factory):
        raise InvalidArgument(f"factory={factory!r} is not callable: pass e.g. reference.rnn.make_case.")
    if "rng" in kwargs:
        raise InvalidArgument("rng=...: layer_cases makes the rng from the drawn seed; pass seed= instead.")
    dtypes = _dtypes(dtype)
    seed_strategy = seeds() if seed is None else _strategy(seed)
    drawn = {key: _strategy(value) for key, value in kwargs.items()}
    name = _qualified_name(factory)

    @st.composite
    def cases(draw: st.DrawFn) -> LayerCase:
        kw = {key: draw(strategy) for key, strategy in drawn.items()}
        dt = _float_dtype(draw(dtypes))
        s = int(draw(seed_strategy))
        made = factory(np.random.default_rng(s), dtype=dt, **kw)
        if not (isinstance(made, tuple) and len(made) == 3):
            raise InvalidArgument(f"{name}(...) returned {type(made).__name__}: expected (layer, params, x).")
        layer, params, x = made
        return LayerCase(layer=layer, params=params, x=x, seed=s, dtype=dt, factory=name, kwargs=kw)

    return cases()


# ----------------------------------------------------------------------------- recurrent configs


@dataclass(frozen=True)
class RecurrentConfig:
    """One configuration of an Elman RNN for BPTT property tests.

    Attributes:
        hidden: ``H``, the hidden width.
        length: ``T``, the sequence length.
        spectral_scale: the largest singular value of the recurrent matrix ``U``.
        activation: ``"tanh"``, ``"sigmoid"`` or ``"relu"``.
        seed: the seed of the case's ``np.random.default_rng``.

    Examples:
        >>> cfg = RecurrentConfig(hidden=4, length=6, spectral_scale=1.5, activation="tanh", seed=0)
        >>> case = cfg.case(batch=2)
        >>> case.x.shape, case.params["U"].shape
        ((6, 2, 3), (4, 4))
    """

    hidden: int
    length: int
    spectral_scale: float
    activation: str
    seed: int

    def case(
        self, batch: int = 2, inputs: int = 3, outputs: int = 2, dtype: npt.DTypeLike = np.float64
    ) -> LayerCase:
        """Build the ElmanRNN case with ``reference.rnn.make_case``.

        Args:
            batch: ``B``.
            inputs: ``D``, the input width.
            outputs: ``K``, the output width.
            dtype: the dtype of the parameters and the input.

        Returns:
            A :class:`LayerCase` with ``x`` of shape (length, batch, inputs); it unpacks as
            ``layer, params, x``.
        """
        import reference.rnn  # lazily: gradcheck does not import the zoo at import time

        dt = _float_dtype(dtype)
        kw: dict[str, Any] = {
            "T": self.length, "B": batch, "D": inputs, "H": self.hidden, "K": outputs,
            "activation": self.activation, "spectral_scale": self.spectral_scale,
        }
        layer, params, x = reference.rnn.make_case(np.random.default_rng(self.seed), dtype=dt, **kw)
        return LayerCase(layer=layer, params=params, x=x, seed=self.seed, dtype=dt,
                         factory="reference.rnn.make_case", kwargs=kw)


def _positive_int(value: Any, what: str) -> None:
    if not isinstance(value, SearchStrategy) and not (
        isinstance(value, int) and not isinstance(value, bool) and value >= 1
    ):
        raise InvalidArgument(f"{what}={value!r}: expected a positive int or a strategy of them.")


def recurrent_configs(
    *,
    hidden: SearchStrategy[int] | int = _HIDDEN,
    length: SearchStrategy[int] | int = _LENGTH,
    spectral_scale: SearchStrategy[float] | float = _SPECTRAL_SCALE,
    activation: SearchStrategy[str] | str = _ACTIVATION,
    seed: SearchStrategy[int] | int | None = None,
) -> SearchStrategy[RecurrentConfig]:
    """Elman RNN configurations: hidden width, sequence length, spectral scale, activation, seed.

    Each argument is a strategy or a fixed value.  Shrinking lands on the smallest network: one
    hidden unit, one step, ``"tanh"``, seed 0 (and spectral scale 1.0 by default).

    Args:
        hidden: ``H`` (default 1 to 8).
        length: ``T`` (default 1 to 12).
        spectral_scale: ``σ_max(U)`` (default 0.3 to 3.0: vanishing to exploding).
        activation: ``"tanh"``, ``"sigmoid"`` or ``"relu"`` (default any, tanh first).
        seed: a strategy of seeds (default :func:`seeds`) or one fixed seed.

    Returns:
        A strategy of :class:`RecurrentConfig`; build a case with ``config.case(...)``.

    Raises:
        InvalidArgument: a fixed value out of range (``hidden`` or ``length`` < 1, a spectral
            scale that is not positive, an unknown activation).

    Examples:
        >>> from hypothesis import find
        >>> find(recurrent_configs(), lambda c: True)
        RecurrentConfig(hidden=1, length=1, spectral_scale=1.0, activation='tanh', seed=0)
        >>> find(recurrent_configs(length=5), lambda c: c.hidden >= 3).case().x.shape
        (5, 2, 3)
    """
    _positive_int(hidden, "hidden")
    _positive_int(length, "length")
    if not isinstance(spectral_scale, SearchStrategy) and not (
        _is_real(spectral_scale) and 0 < spectral_scale < math.inf
    ):
        raise InvalidArgument(f"spectral_scale={spectral_scale!r}: expected a positive finite float.")
    if not isinstance(activation, SearchStrategy) and activation not in _ACTIVATIONS:
        raise InvalidArgument(f"activation={activation!r}: expected one of {_ACTIVATIONS}.")
    return st.builds(
        RecurrentConfig,
        hidden=_strategy(hidden),
        length=_strategy(length),
        spectral_scale=_strategy(spectral_scale),
        activation=_strategy(activation),
        seed=seeds() if seed is None else _strategy(seed),
    )
