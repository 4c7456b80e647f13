"""Hygiene of user code: copies in, mutation and determinism checks, readable validation errors."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradcheck._tree import flatten, is_leaf_value, path_name
from gradcheck.errors import (
    GradcheckError,
    GradientStructureError,
    InputMutated,
    InvalidArgument,
    NonDeterministic,
    NonFiniteError,
    UserCodeError,
)

__all__ = [
    "call_user",
    "check_deterministic",
    "copier",
    "copy_tree",
    "copy_with_notes",
    "first_change",
    "first_nonfinite",
    "real_loss",
    "scalar_loss",
    "uncopied_notes",
    "validate_param",
]


def copy_tree(tree: Any) -> Any:
    """A deep copy in which arrays keep their subclass (``np.matrix`` stays a matrix); what
    cannot be deep-copied (a lock, a generator, an open file, a module) is passed through as
    itself (see :func:`copy_with_notes`)."""
    return copy_with_notes(tree)[0]


def copy_with_notes(tree: Any) -> tuple[Any, list[tuple[str, str]]]:
    """A deep copy of ``tree`` and, for each part that cannot be deep-copied and is passed
    through uncopied, its path and why.

    A tree that ``copy.deepcopy`` copies is copied by it, as one call (aliasing kept).  Otherwise
    its dicts, lists and tuples are rebuilt and every other part is deep-copied on its own with
    a shared memo; a part whose copy fails is kept as the same object (identity).
    """
    try:
        return copy.deepcopy(tree), []
    except Exception:  # any failure of a user's __deepcopy__/__reduce__: copy part by part
        uncopied: list[tuple[str, str]] = []
        return _copy_parts(tree, (), {}, uncopied), uncopied


def copier(tree: Any) -> tuple[Callable[[], Any], list[tuple[str, str]]]:
    """A function returning a fresh copy of ``tree`` at each call, and the parts it passes
    uncopied; a tree that deep-copies is copied exactly as :func:`copy.deepcopy` does."""
    _, uncopied = copy_with_notes(tree)
    if not uncopied:
        return lambda: copy.deepcopy(tree), []
    return lambda: _copy_parts(tree, (), {}, []), uncopied


def uncopied_notes(uncopied: Sequence[tuple[str, str]], users: str) -> list[str]:
    """One note per part that :func:`copy_with_notes` passed through uncopied."""
    return [f"{name} cannot be copied ({why}): it is passed to {users} uncopied, the same object "
            "at every call, so changes made to it cannot be detected" for name, why in uncopied]


def _copy_parts(tree: Any, path: tuple[Any, ...], memo: dict[int, Any],
                uncopied: list[tuple[str, str]]) -> Any:
    if type(tree) is dict:
        return {k: _copy_parts(v, (*path, k), memo, uncopied) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        fields = zip(tree._fields, tree, strict=True)
        return type(tree)(*(_copy_parts(v, (*path, f), memo, uncopied) for f, v in fields))
    if type(tree) in (list, tuple):
        parts = [_copy_parts(v, (*path, i), memo, uncopied) for i, v in enumerate(tree)]
        return parts if type(tree) is list else tuple(parts)
    trial = dict(memo)  # a failed copy can leave half-built objects in its memo: drop them
    try:
        out = copy.deepcopy(tree, trial)
    except Exception as exc:
        uncopied.append((path_name(path), f"{type(exc).__name__}: {exc}"))
        return tree
    memo.update(trial)
    return out


def call_user(fn: Callable[..., Any], what: str, *args: Any, where: str = "") -> Any:
    """Call user code; any exception becomes :class:`UserCodeError` naming the function and the
    point, with the original chained."""
    try:
        return fn(*args)
    except GradcheckError:
        raise
    except Exception as exc:
        at = f" while {where}" if where else ""
        raise UserCodeError(
            f"{what} raised {type(exc).__name__}: {exc}{at}.\n"
            f"  The error is in your code, not in gradcheck: run {what} on the same input to "
            "reproduce it (its traceback is chained to this error as __cause__: pytest and "
            "gradcheck audit print it above this message)."
        ) from exc


def first_nonfinite(a: np.ndarray) -> tuple[tuple[int, ...], float, int] | None:
    """Index, value and count of the non-finite entries of ``a`` (``None`` when all are finite)."""
    bad = ~np.isfinite(a)
    if not bad.any():
        return None
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    return first, float(a[first]), int(bad.sum())


def validate_param(value: Any, name: str) -> np.ndarray:
    """A differentiable leaf as a float array, or a clear :class:`InvalidArgument` /
    :class:`NonFiniteError` naming it."""
    if value is None or not is_leaf_value(value):
        raise InvalidArgument(
            f"Expected an array but got {name}={_short(value)} (type={type(value).__name__}). "
            "Parameters must be a dict/list/tuple of float arrays; pass other values in *args."
        )
    arr = np.asarray(value)
    if arr.dtype.kind in "biu":
        raise InvalidArgument(
            f"{name} has integer dtype {arr.dtype}: gradients are defined only for float "
            "tensors. Pass integer data (labels, indices) in *args, or cast it with "
            f"{name}.astype(np.float64) if it is a parameter."
        )
    if arr.dtype.kind != "f":
        raise InvalidArgument(
            f"{name} has dtype {arr.dtype}; gradcheck checks real float tensors "
            "(float16/32/64). Split complex parameters into real and imaginary parts."
        )
    bad = first_nonfinite(arr)
    if bad is not None:
        idx, val, count = bad
        raise NonFiniteError(
            f"{name} holds {val} at {list(idx)} ({count} non-finite entr"
            f"{'y' if count == 1 else 'ies'}): a gradient check needs a finite point. "
            "Check how the parameters were initialised."
        )
    return arr


def scalar_loss(value: Any, what: str) -> complex | float:
    """The loss as a Python number, or a readable error when it is not one scalar."""
    if isinstance(value, tuple | list):
        raise InvalidArgument(
            f"{what} returned a {type(value).__name__} of {len(value)} values, not a scalar "
            "loss. If it returns (loss, grads) together use gc.loss_and_grads(...); if it "
            "returns (out, cache) use gc.cs231n_layer(...)."
        )
    try:
        arr = np.asarray(value)
    except Exception as exc:  # e.g. a JAX tracer: the caller handles that path itself
        raise InvalidArgument(f"{what} returned {_short(value)}, not a number") from exc
    if arr.size != 1 or arr.dtype.kind not in "fciub":
        raise InvalidArgument(
            f"{what} must return a scalar loss but returned shape {arr.shape} (dtype "
            f"{arr.dtype}). Return the summed loss, or check a layer with gc.check_layer, "
            "which contracts its output with a random dy."
        )
    out = arr.reshape(()).item()
    if isinstance(out, complex):
        return out
    return float(out)


def real_loss(value: Any, what: str) -> float:
    """The loss of real parameters at a real point: a real scalar, or an :class:`InvalidArgument`
    saying what to return (a complex loss is never silently cut to its real part)."""
    got = scalar_loss(value, what)
    if isinstance(got, complex):
        raise InvalidArgument(
            f"{what} returned a complex loss {got!r} for real parameters: gradcheck checks the "
            "gradient of a real scalar loss and does not drop the imaginary part. Return a real "
            "scalar, e.g. loss.real or abs(loss), whichever your hand gradient differentiates."
        )
    return got


def check_finite_loss(loss: float, what: str) -> None:
    if not np.isfinite(loss):
        raise NonFiniteError(
            f"{what} returned a non-finite loss ({loss}) at the given point: nothing can be "
            "differentiated there. Check the inputs (log of 0? overflow in exp?)."
        )


def first_change(before: Any, after: Any, root: str) -> str | None:
    """Describe the first array entry that differs between two copies of a tree, or ``None``."""
    leaves_b, _ = flatten(before)
    leaves_a, _ = flatten(after)
    for lb, la in zip(leaves_b, leaves_a, strict=False):
        b, a = lb.value, la.value
        if not isinstance(b, np.ndarray):
            continue
        a = np.asarray(a)
        name = path_name(lb.path, root)
        if a.shape != b.shape:
            return f"{name} changed shape from {b.shape} to {a.shape}"
        diff = ~((a == b) | (np.isnan(a) & np.isnan(b))) if b.dtype.kind in "fc" else a != b
        if np.any(diff):
            idx = tuple(int(i) for i in np.argwhere(diff)[0])
            return (f"{name}{list(idx)} was {b[idx].item()!r} before the call and "
                    f"{a[idx].item()!r} after "
                    f"({int(np.sum(diff))} entries changed)")
    return None


def raise_if_mutated(before: Any, after: Any, root: str, what: str) -> None:
    change = first_change(before, after, root)
    if change is not None:
        raise InputMutated(
            f"{what} modified its input: {change}. gradcheck passed a copy, so this check is "
            "unaffected, but the same code would corrupt a training loop: copy before writing "
            "(x = x.copy()) or write to a new array."
        )


def check_deterministic(values: Sequence[float], what: str) -> None:
    """Raise :class:`NonDeterministic` when repeated calls at the same point disagree."""
    first = values[0]
    for other in values[1:]:
        if abs(other - first) > 8 * np.finfo(np.float64).eps * max(abs(first), abs(other)):
            raise NonDeterministic(
                f"{what} returned {first!r} and then {other!r} for the same input: it is "
                "random or stateful, so finite differences of it mean nothing. Seed its "
                "randomness from an argument (e.g. pass a dropout mask or a "
                "np.random.Generator in args) or reset its state."
            )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_hand(
    grads: Any,
    names: Sequence[str],
    shapes: Sequence[tuple[int, ...]],
    *,
    what: str,
    optional: Sequence[str] = (),
) -> tuple[list[np.ndarray | None], list[str]]:
    """Match a returned gradient tree to the parameter leaves, leaf by leaf.

    Accepts the same structure as the parameters, or a flat list/tuple with one entry per leaf in
    order.  A gradient of a squeezable shape (``(1, D)`` for a ``(D,)`` parameter) is reshaped
    with a note; anything else mis-shaped, missing, extra, integer, complex or non-finite raises.
    Leaves named in ``optional`` may be ``None`` (not checked, with a note).

    Returns:
        The gradients (native dtype; ``None`` for skipped optional leaves) and notes.
    """
    notes: list[str] = []
    leaves, _ = flatten(grads)
    got = {leaf.name: leaf.value for leaf in leaves}
    if set(got) != set(names):
        if len(leaves) == len(names) and not isinstance(grads, dict):
            got = {n: leaf.value for n, leaf in zip(names, leaves, strict=True)}
            if len(names) > 1:
                notes.append(f"{what}'s gradients were matched to the parameters by position")
        else:
            missing = [n for n in names if n not in got and n not in optional]
            extra = [n for n in got if n not in names]
            if missing or extra:
                raise GradientStructureError(
                    f"{what} returned gradients that do not match the parameters: "
                    + (f"missing {missing}" if missing else "")
                    + ("; " if missing and extra else "")
                    + (f"unexpected {extra}" if extra else "")
                    + f". Expected exactly {list(names)}: one gradient per parameter, same keys."
                )
    out: list[np.ndarray | None] = []
    for name, shape in zip(names, shapes, strict=True):
        value = got.get(name)
        if value is None:
            if name in optional:
                notes.append(f"{what} returned no gradient for {name}: it is not checked")
                out.append(None)
                continue
            raise GradientStructureError(
                f"{what} returned None for {name}: return an array of shape {shape}."
            )
        out.append(_hand_leaf(value, name, shape, what, notes))
    return out, notes


def _hand_leaf(value: Any, name: str, shape: tuple[int, ...], what: str, notes: list[str]) -> np.ndarray:
    try:
        arr = np.array(value, copy=True)
    except Exception as exc:
        raise GradientStructureError(
            f"{what} returned {_short(value)} for {name}, which is not an array"
        ) from exc
    if arr.dtype.kind in "biu":
        raise GradientStructureError(
            f"{what} returned an integer array (dtype {arr.dtype}) for {name}: a gradient must be "
            "float. Was it allocated with np.zeros_like of an integer array?"
        )
    if arr.dtype.kind != "f":
        raise GradientStructureError(
            f"{what} returned dtype {arr.dtype} for {name}; expected a real float array."
        )
    if arr.shape != tuple(shape):
        if arr.size == int(np.prod(shape)) and np.squeeze(arr).shape == tuple(
            d for d in shape if d != 1
        ):
            notes.append(f"{what}'s gradient for {name} has shape {arr.shape}; accepted as "
                         f"{tuple(shape)} (a squeezable extra axis)")
            arr = arr.reshape(shape)
        else:
            hint = " (transposed?)" if arr.shape == tuple(shape)[::-1] else ""
            raise GradientStructureError(
                f"{what} returned shape {arr.shape} for {name}, which has shape {tuple(shape)}"
                f"{hint}. Return a gradient shaped like the parameter."
            )
    bad = first_nonfinite(arr)
    if bad is not None:
        idx, val, count = bad
        raise NonFiniteError(
            f"{what} returned {val} in the gradient of {name} at {list(idx)} ({count} "
            f"non-finite entr{'y' if count == 1 else 'ies'}) although the loss is finite. "
            "Look for a division by zero or log(0) in the backward."
        )
    return np.asarray(arr)
