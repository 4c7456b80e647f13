"""User code → a frozen :class:`Problem`: the first stage of every check.

``check_grad`` and ``check_layer`` both reduce to one problem — a scalar loss over named float
leaves, the hand gradient of each leaf, and the JAX losses that may serve as the autodiff
reference.  This stage calls the user's code at the given point (on copies; an argument that
cannot be copied is passed as itself), validates what it returns (a real scalar loss, at least
one tensor with entries to check), notes what it noticed (a backward that writes into its inputs,
squeezed shapes, uncopied arguments, size-0 tensors skipped), and flattens the pytree once; later
stages only read the record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck import _hygiene as hy
from gradcheck import autodiff, timeaxis, twin
from gradcheck._tree import TreeDef, flatten, path_name
from gradcheck.adapters import CS231nLayer
from gradcheck.errors import InvalidArgument, NonFiniteError
from gradcheck.options import CheckOptions

__all__ = ["Candidates", "HandAt", "Problem", "grad_problem", "jax_losses", "layer_problem"]

#: Builds the JAX losses over the leaves that may be the autodiff reference, best first.
Candidates = Callable[[], list[tuple[str, Callable[[list[Any]], Any], "autodiff.Jittable | None"]]]
#: ``hand_at(leaves, upcast)``: the user's backward again at other leaf values (``upcast``: a
#: dtype every lower-precision float input is cast to, or ``None``), validated like ``hand``.
HandAt = Callable[[list[np.ndarray], Any], list["np.ndarray | None"]]


@dataclass(frozen=True)
class Problem:
    """A scalar loss over named float leaves, with the hand gradient of each leaf.

    ``loss(tree)`` calls the user's forward on a tree rebuilt from leaves (numpy or JAX);
    ``jax_candidates`` build JAX losses over the leaves for the autodiff reference; ``f0`` is the
    loss at the given point in the user's own dtypes; ``loss_scale`` the magnitude of the loss's
    terms (``Σ|dy ⊙ y|`` for a layer, ``|L|`` otherwise): the rounding of any gradient computed
    from them is relative to this, not to the gradient.
    """

    kind: str
    name: str
    names: tuple[str, ...]
    values: tuple[np.ndarray, ...]
    subclasses: tuple[type, ...]
    treedef: TreeDef
    loss: Callable[[Any], Any]
    hand: tuple[np.ndarray | None, ...]
    jax_candidates: Candidates
    twin: bool
    notes: tuple[str, ...]
    hand_at: HandAt | None
    loss_scale: float
    f0: float
    #: The axis of a sequence leaf that is time (``time_axis`` given, or read from the code).
    time_axis: timeaxis.TimeAxis = timeaxis.DEFAULT

    def rebuild(self, leaves: Sequence[Any]) -> Any:
        """The user's pytree (with its array subclasses) around ``leaves``."""
        views = [
            leaf.view(cls) if isinstance(leaf, np.ndarray) and cls is not np.ndarray else leaf
            for leaf, cls in zip(leaves, self.subclasses, strict=True)
        ]
        return self.treedef.unflatten(views)

    @property
    def checked(self) -> tuple[int, ...]:
        """The leaves that have a hand gradient to check (``dx=None`` is not checked)."""
        return tuple(k for k, h in enumerate(self.hand) if h is not None)

    @property
    def total(self) -> int:
        """How many entries are checked in all."""
        return sum(self.values[k].size for k in self.checked)


@dataclass(frozen=True)
class _Leaves:
    names: list[str]
    values: list[np.ndarray]
    classes: list[type]
    roots: list[Any]
    treedef: TreeDef

    def shapes(self, part: slice = slice(None)) -> list[tuple[int, ...]]:
        return [v.shape for v in self.values[part]]


def _leaves(tree: Any, names_of: Callable[[tuple[Any, ...]], str] | None = None) -> _Leaves:
    leaves, treedef = flatten(tree)
    if not leaves:
        raise InvalidArgument("params is empty: there is nothing to check.")
    names = [names_of(leaf.path) if names_of is not None
             else path_name(leaf.path) if leaf.path else "params" for leaf in leaves]
    values = [hy.validate_param(leaf.value, name) for leaf, name in zip(leaves, names, strict=True)]
    _require_entries(names, values)
    return _Leaves(
        names, values,
        [type(leaf.value) if isinstance(leaf.value, np.ndarray) else np.ndarray for leaf in leaves],
        [leaf.path[0] if leaf.path else None for leaf in leaves], treedef)


def _named(leaves: _Leaves, given: Callable[[int, bool], Sequence[str] | None] | None) -> _Leaves:
    """The leaves under the names an adapter gives them (``loss_and_grads(fn, names=...)``, or
    read from ``fn``'s code for the leaves of a tuple or list), when it gives one per leaf."""
    positional = all(name.startswith("[") for name in leaves.names)
    names = given(len(leaves.names), positional) if given is not None else None
    if names is None:
        return leaves
    return _Leaves(list(names), leaves.values, leaves.classes, leaves.roots, leaves.treedef)


def _require_entries(names: Sequence[str], values: Sequence[np.ndarray]) -> None:
    """At least one leaf with entries: a problem of size-0 tensors only has nothing to check."""
    if any(v.size for v in values):
        return
    empty = ", ".join(f"{n} (shape {v.shape})" for n, v in zip(names, values, strict=True))
    raise InvalidArgument(
        f"{empty} {'has' if len(values) == 1 else 'have'} no entries: there is nothing to check. "
        "Pass parameters (and inputs) with at least one entry."
    )


def _skip_empty(hand: Sequence[np.ndarray | None], leaves: _Leaves, bwd: str
                ) -> tuple[list[np.ndarray | None], list[str]]:
    """The hand gradients with those of size-0 leaves dropped (nothing to check there, with a
    note), or an :class:`InvalidArgument` when no leaf with entries is left to check."""
    out: list[np.ndarray | None] = list(hand)
    notes: list[str] = []
    for k, value in enumerate(leaves.values):
        if value.size == 0 and out[k] is not None:
            out[k] = None
            notes.append(f"{leaves.names[k]} has no entries (shape {value.shape}): there is "
                         "nothing to check in it, so it is skipped")
    if all(h is None for h in out):
        why = [f"{n} has no entries" if v.size == 0 else f"{bwd} returned no gradient for {n}"
               for n, v in zip(leaves.names, leaves.values, strict=True)]
        raise InvalidArgument(f"there is nothing to check: {'; '.join(why)}. Return a gradient "
                              "for at least one tensor with entries.")
    return out, notes


def _upcast(tree: Any, dtype: Any = np.float64) -> Any:
    """A copy of ``tree`` with every float array of lower precision than ``dtype`` cast to it."""
    leaves, treedef = flatten(hy.copy_tree(tree))
    target = np.dtype(dtype)
    return treedef.unflatten([
        leaf.value.astype(target) if isinstance(leaf.value, np.ndarray)
        and leaf.value.dtype.kind == "f" and np.finfo(leaf.value.dtype).eps > np.finfo(target).eps
        else leaf.value
        for leaf in leaves
    ])


def _mutation_note(before: Any, after: Any, what: str) -> list[str]:
    change = hy.first_change(before, after, "")
    if change is None:
        return []
    return [f"{what} modifies its inputs ({change}); gradcheck passes copies, so the check is "
            "unaffected"]


# ----------------------------------------------------------------------------- check_grad


def _grad_loss(fun: Callable[..., Any], pristine: Any, label: str) -> float:
    """The loss at the given point, called on copies (a forward that mutates them is an error)."""
    what = f"{label}(params, *args)"
    passed = hy.copy_tree(pristine)
    f0 = hy.call_user(fun, what, passed["params"], *passed["args"],
                      where="computing the loss at the given point")
    hy.raise_if_mutated(pristine, passed, "", f"the loss function {label}")
    value = hy.real_loss(f0, what)
    hy.check_finite_loss(value, what)
    return value


_function_key = autodiff.program_key


def _grad_jittable(fn: Callable[..., Any], treedef: TreeDef, args: tuple[Any, ...], *,
                   numpy_args: bool = False) -> autodiff.Jittable | None:
    """``fn(params, *args)`` traced over its leaves and its array ``args`` (only when every
    arg is an array: anything else may steer Python control flow).  ``numpy_args``: the
    candidate that passes ``args`` as numpy constants, traced at each call, only remembered when
    JAX cannot trace it."""
    key = _function_key(fn)
    if key is None or not all(isinstance(a, np.ndarray) for a in args):
        return None

    def loss(ls: list[Any], data: list[Any]) -> Any:
        return fn(treedef.unflatten(ls), *data)

    return autodiff.Jittable(("check_grad", key, treedef, len(args), numpy_args), loss, list(args),
                             compile=not numpy_args)


def _twin_grad_loss(fun: Callable[..., Any], treedef: TreeDef) -> Callable[[list[Any], Any], Any]:
    """``fun``'s automatic JAX twin (built on first use, :func:`gradcheck.twin.twin_of`) as a
    loss over JAX leaves and the arrays of ``*args``."""
    def loss(ls: list[Any], data: Any) -> Any:
        made = twin.twin_of(fun)
        return twin.raw_tree(made(treedef.unflatten(twin.box_tree(list(ls))), *twin.box_tree(data)))
    return loss


def _twin_grad_jittable(fun: Callable[..., Any], treedef: TreeDef, args: tuple[Any, ...]
                        ) -> autodiff.Jittable | None:
    key = _function_key(fun)
    if key is None or not all(isinstance(a, np.ndarray) for a in args):
        return None
    return autodiff.Jittable(("twin", "check_grad", key, treedef, len(args)),
                             _twin_grad_loss(fun, treedef), list(args))


def _grad_candidates(fun: Callable[..., Any], args: Callable[[], Any], treedef: TreeDef,
                     jax_fun: Callable[..., Any] | None, jax_twin: Any) -> Candidates:
    """``args()`` is a fresh copy of the user's ``*args`` at each call."""
    def candidates() -> list[tuple[str, Callable[[list[Any]], Any], autodiff.Jittable | None]]:
        given = args()
        if jax_fun is not None:
            user_twin = jax_fun
            return [(autodiff.JAX_FUN,
                     lambda ls: user_twin(treedef.unflatten(ls), *autodiff.to_jax(args())),
                     _grad_jittable(user_twin, treedef, given))]
        found = [(autodiff.ON_JAX,
                  lambda ls: fun(treedef.unflatten(ls), *autodiff.to_jax(args())),
                  _grad_jittable(fun, treedef, given)),
                 (autodiff.ON_JAX_PARAMS,
                  lambda ls: fun(treedef.unflatten(ls), *args()),
                  _grad_jittable(fun, treedef, given, numpy_args=True))]
        if jax_twin:
            twin_loss = _twin_grad_loss(fun, treedef)
            found.append((autodiff.AUTO_TWIN, lambda ls: twin_loss(ls, args()),
                          _twin_grad_jittable(fun, treedef, given)))
        return found
    return candidates


def jax_losses(fun: Callable[..., Any], params: Any, args: tuple[Any, ...], opts: CheckOptions
               ) -> tuple[Candidates, list[np.ndarray], TreeDef]:
    """The JAX candidates of ``fun(params, *args)`` as losses over a list of leaves (the
    ``jax_fun`` twin, the forward on JAX arrays, the automatic twin; see :func:`grad_problem`),
    with the leaves and the tree they rebuild: what a check of a derivative *of* a gradient
    (:mod:`gradcheck.hvp`) differentiates."""
    leaves = _leaves(params)
    copy_args, _ = hy.copier(args)
    return (_grad_candidates(fun, copy_args, leaves.treedef, opts.jax_fun, opts.jax_twin),
            leaves.values, leaves.treedef)


def grad_problem(fun: Callable[..., Any], grad: Callable[..., Any], params: Any,
                 args: tuple[Any, ...], opts: CheckOptions) -> Problem:
    """The problem of :func:`gradcheck.check_grad`: ``fun(params, *args)`` and its hand gradient
    ``grad(params, *args)``, both called on copies."""
    leaves = _named(_leaves(params), getattr(fun, "__gradcheck_names__", None))
    label = str(opts.name or getattr(fun, "__name__", "fun"))
    pristine, uncopied = hy.copy_with_notes({"params": params, "args": list(args)})
    copy_args, _ = hy.copier(args)
    f0 = _grad_loss(fun, pristine, label)

    given = hy.copy_tree(pristine)
    grad_name = getattr(grad, "__name__", "grad")
    raw = hy.call_user(grad, f"{grad_name}(params, *args)", given["params"], *given["args"],
                       where="computing the hand gradient")
    notes = hy.uncopied_notes(uncopied, f"{label} and {grad_name}")
    notes += _mutation_note(pristine, given, grad_name)
    hand, hand_notes = hy.validate_hand(raw, leaves.names, leaves.shapes(), what=grad_name)
    hand, empty_notes = _skip_empty(hand, leaves, grad_name)

    def loss(tree: Any) -> Any:
        return fun(tree, *copy_args())

    def hand_at(values: list[np.ndarray], upcast: Any) -> list[np.ndarray | None]:
        args_ = _upcast(pristine["args"], upcast) if upcast else hy.copy_tree(pristine["args"])
        raw_ = grad(problem.rebuild(values), *args_)
        return hy.validate_hand(raw_, leaves.names, leaves.shapes(), what=grad_name)[0]

    problem = Problem(
        kind="check_grad", name=label, names=tuple(leaves.names), values=tuple(leaves.values),
        subclasses=tuple(leaves.classes), treedef=leaves.treedef, loss=loss, hand=tuple(hand),
        jax_candidates=_grad_candidates(fun, copy_args, leaves.treedef, opts.jax_fun,
                                        opts.jax_twin),
        twin=opts.jax_fun is not None, notes=tuple(notes + hand_notes + empty_notes), hand_at=hand_at,
        loss_scale=abs(f0), f0=f0,
        time_axis=timeaxis.resolve(opts.time_axis, leaves.shapes(), timeaxis.sources_of(fun),
                                   timeaxis.named_arrays({"params": params, "args": list(args)})))
    return problem


# ----------------------------------------------------------------------------- check_layer


def _require_layer(layer: Any) -> None:
    for method in ("forward", "backward"):
        if not callable(getattr(layer, method, None)):
            raise InvalidArgument(
                f"layer {type(layer).__name__} has no {method}() method: expected forward(params, "
                "x) and backward(params, x, dy). For CS231n-style functions use "
                "gc.cs231n_layer(forward, backward); for objects that keep a cache use "
                "gc.stateful_layer(obj, ...)."
            )


def _layer_name(path: tuple[Any, ...]) -> str:
    if path[0] == "x":
        return path_name(path[1:], "x")
    return path_name(path[1:]) if path[1:] else "params"


def _layer_output(y: Any, what: str) -> np.ndarray:
    if isinstance(y, tuple | list):
        raise InvalidArgument(
            f"{what} returned a {type(y).__name__} of {len(y)} values; expected the output array. "
            "For CS231n-style (out, cache) functions use gc.cs231n_layer(forward, backward)."
        )
    arr = np.asarray(y)
    if arr.dtype.kind == "c":
        raise InvalidArgument(
            f"{what} returned a complex output (shape {arr.shape}, dtype {arr.dtype}) for real "
            "inputs: gradcheck checks real layers and does not drop the imaginary part. Return a "
            "real array, e.g. y.real or abs(y), whichever your backward differentiates."
        )
    if arr.dtype.kind != "f":
        raise InvalidArgument(f"{what} returned dtype {arr.dtype}; expected a float array.")
    bad = hy.first_nonfinite(arr)
    if bad is not None:
        raise NonFiniteError(
            f"{what} returned {bad[1]} at {list(bad[0])} of its output: check the point."
        )
    return arr


def contract(y: Any, dy: np.ndarray) -> Any:
    """``⟨dy, y⟩`` in the namespace of ``y`` (numpy, or jax.numpy under tracing)."""
    get = getattr(y, "__array_namespace__", None)
    if get is None:
        return np.sum(dy * np.asarray(y))
    xp = get()
    return xp.sum(xp.asarray(dy) * y)


def _layer_hand(raw: Any, leaves: _Leaves, n_params: int, bwd: str) -> tuple[list[Any], list[str]]:
    """``(dparams, dx)`` from a layer's backward, validated leaf by leaf (``dx`` may be None)."""
    if not isinstance(raw, tuple | list) or len(raw) != 2:
        n = len(raw) if isinstance(raw, tuple | list) else 1
        raise InvalidArgument(
            f"{bwd} must return (dparams, dx); it returned {n} value(s). For CS231n-style "
            "backwards returning (dx, dw, db) use gc.cs231n_layer(forward, backward)."
        )
    split = slice(None, n_params), slice(n_params, None)
    hand_p, notes_p = hy.validate_hand(raw[0] if n_params else [], leaves.names[split[0]],
                                       leaves.shapes(split[0]), what=bwd)
    hand_x, notes_x = hy.validate_hand(raw[1], leaves.names[split[1]], leaves.shapes(split[1]),
                                       what=bwd, optional=leaves.names[split[1]])
    return hand_p + hand_x, notes_p + notes_x


def _layer_loss(forward: Callable[..., Any], treedef: TreeDef) -> Callable[[list[Any], Any], Any]:
    def loss(ls: list[Any], dy: Any) -> Any:
        t = treedef.unflatten(ls)
        return contract(forward(t["params"], t["x"]), dy)

    return loss


def _twin_layer_loss(forward: Callable[..., Any], treedef: TreeDef
                     ) -> Callable[[list[Any], Any], Any]:
    """``⟨dy, twin(forward)(params, x)⟩`` over JAX leaves, the twin built on first use."""
    def loss(ls: list[Any], dy: Any) -> Any:
        t = treedef.unflatten(twin.box_tree(list(ls)))
        y = twin.raw_tree(twin.twin_of(forward)(t["params"], t["x"]))
        return contract(y, dy)
    return loss


def _layer_candidates(forward: Callable[..., Any], user_twin: bool, jax_twin: Any,
                      treedef: TreeDef, dy: np.ndarray) -> Candidates:
    desc = autodiff.JAX_FUN if user_twin else autodiff.ON_JAX
    key = _function_key(forward)
    loss = _layer_loss(forward, treedef)
    jittable = (autodiff.Jittable(("check_layer", key, treedef), loss, dy)
                if key is not None else None)
    found: list[tuple[str, Callable[[list[Any]], Any], autodiff.Jittable | None]] = [
        (desc, lambda ls: loss(ls, dy), jittable)]
    if jax_twin and not user_twin:
        twin_loss = _twin_layer_loss(forward, treedef)
        found.append((autodiff.AUTO_TWIN, lambda ls: twin_loss(ls, dy),
                      autodiff.Jittable(("twin", "check_layer", key, treedef), twin_loss, dy)
                      if key is not None else None))
    return lambda: list(found)


def _adapter_notes(layer: Any) -> tuple[str, ...]:
    """What a gradcheck adapter noticed about the user's code (static arguments it cannot copy)."""
    return layer.notes if isinstance(layer, CS231nLayer) else ()


def layer_problem(layer: Any, params: Any, x: Any, opts: CheckOptions) -> Problem:
    """The problem of :func:`gradcheck.check_layer`: ``L = ⟨dy, forward(params, x)⟩`` with a
    seeded ``dy`` exactly representable in ``y``'s dtype, and the layer's backward at ``dy``."""
    _require_layer(layer)
    label = opts.name or _layer_label(layer)
    tree = {"params": params, "x": x}
    leaves = _leaves(tree, _layer_name)
    n_params = sum(root == "params" for root in leaves.roots)
    fwd = f"{label}.forward(params, x)"

    pristine = hy.copy_tree(tree)
    passed = hy.copy_tree(tree)
    y0 = hy.call_user(layer.forward, fwd, passed["params"], passed["x"], where="at the given point")
    hy.raise_if_mutated(pristine, passed, "", fwd)
    y0 = _layer_output(y0, fwd)
    # dy exactly representable in y's dtype: the backward and the references see the same dy.
    dy = np.random.default_rng(opts.seed).standard_normal(y0.shape).astype(y0.dtype).astype(np.float64)
    f0 = float(np.sum(dy * np.asarray(y0, np.float64)))
    hy.check_finite_loss(f0, fwd)

    given = hy.copy_tree({**tree, "dy": dy.astype(y0.dtype)})
    bwd = f"{label}.backward(params, x, dy)"
    raw = hy.call_user(layer.backward, bwd, given["params"], given["x"], given["dy"],
                       where="computing the hand gradient")
    notes = _mutation_note({**pristine, "dy": dy.astype(y0.dtype)}, given, bwd)
    hand, hand_notes = _layer_hand(raw, leaves, n_params, bwd)
    hand, empty_notes = _skip_empty(hand, leaves, bwd)

    def loss(t: Any) -> Any:
        return contract(layer.forward(t["params"], t["x"]), dy)

    def hand_at(values: list[np.ndarray], upcast: Any) -> list[np.ndarray | None]:
        t = problem.rebuild(values)
        got = layer.backward(t["params"], t["x"], dy.astype(upcast) if upcast else dy.astype(y0.dtype))
        return _layer_hand(got, leaves, n_params, bwd)[0]

    problem = Problem(
        kind="check_layer", name=label, names=tuple(leaves.names), values=tuple(leaves.values),
        subclasses=tuple(leaves.classes), treedef=leaves.treedef, loss=loss, hand=tuple(hand),
        jax_candidates=_layer_candidates(opts.jax_fun or layer.forward, opts.jax_fun is not None,
                                         opts.jax_twin, leaves.treedef, dy),
        twin=opts.jax_fun is not None, notes=(*_adapter_notes(layer), *notes, *hand_notes, *empty_notes),
        hand_at=hand_at, loss_scale=float(np.sum(np.abs(dy * np.asarray(y0, np.float64)))), f0=f0,
        time_axis=timeaxis.resolve(opts.time_axis, leaves.shapes(), timeaxis.sources_of(layer),
                                   timeaxis.named_arrays({"params": params,
                                                          **getattr(layer, "static", {})})))
    return problem


def _layer_label(layer: Any) -> str:
    """The name a check of ``layer`` goes by: an adapter's (the user's forward function or
    class, ``__name__`` on the instance), else the layer's class."""
    own = vars(layer).get("__name__") if hasattr(layer, "__dict__") else None
    return str(own) if isinstance(own, str) and own else type(layer).__name__
