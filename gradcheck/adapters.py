"""Adapters from the shapes people write backward passes in to gradcheck's layer protocol.

gradcheck's own protocol is ``forward(params, x) -> y`` / ``backward(params, x, dy) ->
(dparams, dx)``, or ``fun(params, *args)`` / ``grad(params, *args)``.  Hand-written numpy code
comes in other shapes; each adapter here wraps one of them without changing the user's code:

* :func:`cs231n_layer` — ``out, cache = f(x, w, b, ...)`` and ``dx, dw, db = f_backward(dout, cache)``;
* :func:`stateful_layer` — an object whose ``forward(x)`` stores what ``backward(dout)`` uses, and
  whose gradients are returned or stored on the object (``obj.dW``, ``obj.grads["W"]`` …);
* :func:`loss_and_grads` — ``loss, grads = f(params, ...)`` (char-RNN scripts), returning the
  ``(fun, grad)`` pair that :func:`gradcheck.check_grad` takes.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gradcheck import _hygiene as hy
from gradcheck._tree import flatten
from gradcheck.errors import GradientStructureError, InvalidArgument

__all__ = ["CS231nLayer", "StatefulLayer", "cs231n_layer", "loss_and_grads", "stateful_layer"]


class CS231nLayer:
    """A CS231n-style forward/backward function pair seen through the layer protocol.

    ``params`` names the differentiable arguments after ``x`` in the forward's signature, in
    order; ``static`` gives the others by name (``conv_param``, ``pool_param``, ``bn_param``),
    deep-copied for every call so a forward that updates them (batch-norm running means) stays
    deterministic; a part that cannot be copied (a lock, an open file) is passed as itself, and
    ``notes`` says so.  The backward returns ``dx`` alone or ``(dx, d<param1>, d<param2>, …)``.
    """

    def __init__(self, forward: Callable[..., Any], backward: Callable[..., Any],
                 params: Sequence[str], static: Mapping[str, Any]) -> None:
        self._forward, self._backward = forward, backward
        self.param_names, self.static = tuple(params), dict(static)
        self.__name__ = getattr(forward, "__name__", "layer")
        self.__gradcheck_source__ = forward  # docstrings and names come from the user's code
        uncopied = hy.copy_with_notes(self.static)[1]
        self.notes: tuple[str, ...] = tuple(hy.uncopied_notes(uncopied, self.__name__))

    def __gradcheck_twin__(self, translate: Callable[[Any], Any]) -> CS231nLayer:
        """The automatic JAX twin's view of this adapter (:mod:`gradcheck.twin`): the same
        adapter over the twin of the forward (the backward is never translated)."""
        return CS231nLayer(translate(self._forward), self._backward, self.param_names,
                           translate(self.static))

    def _args(self, params: Mapping[str, Any], x: Any) -> list[Any]:
        missing = [n for n in self.param_names if n not in params]
        if missing:
            raise InvalidArgument(
                f"{self.__name__} takes parameters {list(self.param_names)} but params has "
                f"{list(params)}: pass params={{{', '.join(repr(n) + ': ...' for n in self.param_names)}}}."
            )
        static = hy.copy_tree(self.static)
        sig = _positional_names(self._forward)
        if sig is None:
            return [x, *(params[n] for n in self.param_names), *static.values()]
        values = {**static, **{n: params[n] for n in self.param_names}}
        return [x, *(values[n] for n in sig[1:] if n in values)]

    def forward(self, params: Mapping[str, Any], x: Any) -> Any:
        out = self._forward(*self._args(params, x))
        if not isinstance(out, tuple) or len(out) != 2:
            raise InvalidArgument(
                f"{self.__name__} should return (out, cache) like CS231n's layers; it returned "
                f"{type(out).__name__}. For forward(params, x) layers pass the object itself."
            )
        return out[0]

    def backward(self, params: Mapping[str, Any], x: Any, dy: Any) -> tuple[dict[str, Any], Any]:
        _, cache = self._forward(*self._args(params, x))
        got = self._backward(dy, cache)
        grads = got if isinstance(got, tuple | list) else (got,)
        if len(grads) != 1 + len(self.param_names):
            raise GradientStructureError(
                f"{getattr(self._backward, '__name__', 'backward')} returned {len(grads)} "
                f"gradient(s); expected dx followed by one per parameter "
                f"{list(self.param_names)} ({1 + len(self.param_names)} in all)."
            )
        return dict(zip(self.param_names, grads[1:], strict=True)), grads[0]


def _positional_names(fn: Callable[..., Any]) -> list[str] | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in sig.parameters.values()):
        return None
    return [p.name for p in sig.parameters.values() if p.kind in kinds]


def cs231n_layer(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    *,
    params: Sequence[str] | None = None,
    static: Mapping[str, Any] | None = None,
) -> CS231nLayer:
    """Wrap CS231n-style ``out, cache = forward(x, w, b, ...)`` / ``backward(dout, cache)``.

    Args:
        forward: ``forward(x, *params, *static) -> (out, cache)``.
        backward: ``backward(dout, cache) -> dx`` or ``(dx, dw, db, ...)`` in parameter order.
        params: names of the differentiable arguments after ``x``; by default every argument
            after ``x`` in the forward's signature that is not in ``static``.
        static: non-differentiable keyword arguments (``{"conv_param": {"stride": 1, "pad": 1}}``).

    Returns:
        A layer for :func:`gradcheck.check_layer`, which is then called with
        ``params={"w": w, "b": b}`` and ``x``.

    Examples:
        >>> import numpy as np, gradcheck as gc
        >>> def affine_forward(x, w, b):
        ...     return x @ w + b, (x, w)
        >>> def affine_backward(dout, cache):
        ...     x, w = cache
        ...     return dout @ w.T, x.T @ dout, dout.sum(axis=0)
        >>> rng = np.random.default_rng(0)
        >>> layer = gc.cs231n_layer(affine_forward, affine_backward)
        >>> gc.check_layer(layer, {"w": rng.normal(size=(3, 2)), "b": np.zeros(2)},
        ...                rng.normal(size=(4, 3))).verdict
        'pass'
    """
    static = dict(static or {})
    if params is None:
        names = _positional_names(forward)
        if names is None:
            raise InvalidArgument(
                f"cannot read the parameter names of {forward!r}: pass params=('w', 'b', ...)."
            )
        params = [n for n in names[1:] if n not in static]
    return CS231nLayer(forward, backward, params, static)


_GRAD_PATTERNS = ("d{}", "d_{}", "grad_{}", "{}_grad", "d{cap}", "grad{cap}")


class StatefulLayer:
    """A layer object that caches in ``forward(x)`` and differentiates in ``backward(dout)``.

    Parameters are set on the object (attributes, or entries of its ``params`` dict) before each
    call and restored afterwards; gradients are read from what ``backward`` returns or stores.
    Stored gradients are reset to zero before each backward, so an accumulating backward
    (``self.dW += ...``) is measured correctly; ``accumulates`` records whether it does.
    """

    def __init__(self, obj: Any, params: Sequence[str], grads: Any) -> None:
        self.obj, self.param_names, self.grads = obj, tuple(params), grads
        self.__name__ = type(obj).__name__
        self.__gradcheck_source__ = obj
        self.accumulates: bool | None = None

    def __gradcheck_twin__(self, translate: Callable[[Any], Any]) -> StatefulLayer:
        """The automatic JAX twin's view of this adapter: the same adapter over a translated
        copy of the object (the user's object is never touched by the twin)."""
        return StatefulLayer(translate(self.obj), self.param_names, self.grads)

    def _store(self) -> Any:
        store = getattr(self.obj, "params", None)
        return store if isinstance(store, dict) else None

    def _get(self, name: str) -> Any:
        store = self._store()
        return store[name] if store is not None and name in store else getattr(self.obj, name)

    def _set(self, name: str, value: Any) -> None:
        store = self._store()
        if store is not None and name in store:
            store[name] = value
        else:
            setattr(self.obj, name, value)

    def _with_params(self, params: Mapping[str, Any], call: Callable[[], Any]) -> Any:
        saved = {n: self._get(n) for n in self.param_names}
        try:
            for n in self.param_names:
                self._set(n, params[n])
            return call()
        finally:
            for n, v in saved.items():
                self._set(n, v)

    def forward(self, params: Mapping[str, Any], x: Any) -> Any:
        return self._with_params(params, lambda: self.obj.forward(x))

    def backward(self, params: Mapping[str, Any], x: Any, dy: Any) -> tuple[dict[str, Any], Any]:
        def run() -> tuple[dict[str, Any], Any]:
            self._zero_stored()
            self.obj.forward(x)
            first = self._read(self.obj.backward(dy.copy()))
            self.obj.forward(x)
            second = self._read(self.obj.backward(dy.copy()))
            self.accumulates = any(
                np.any(np.asarray(b, dtype=float) != np.asarray(a, dtype=float))
                and np.allclose(np.asarray(b, dtype=float), 2 * np.asarray(a, dtype=float))
                for a, b in zip(first[0].values(), second[0].values(), strict=True)
            )
            return first

        return self._with_params(params, run)  # type: ignore[no-any-return]

    def _zero_stored(self) -> None:
        for name in self.param_names:
            where = self._locate(name)
            if where is not None:
                holder, key = where
                current = holder[key] if isinstance(holder, dict) else getattr(holder, key)
                if isinstance(current, np.ndarray):
                    zero = np.zeros_like(current)
                    if isinstance(holder, dict):
                        holder[key] = zero
                    else:
                        setattr(holder, key, zero)

    def _locate(self, name: str) -> tuple[Any, str] | None:
        if isinstance(self.grads, Mapping):
            return (self.obj, self.grads[name])
        if callable(self.grads):
            return None
        for store_name in ("grads", "dparams", "gradients"):
            store = getattr(self.obj, store_name, None)
            if isinstance(store, dict) and name in store:
                return (store, name)
        cap = name[:1].upper() + name[1:]
        for pattern in _GRAD_PATTERNS:
            attr = pattern.format(name, cap=cap)
            if hasattr(self.obj, attr):
                return (self.obj, attr)
        return None

    def _read(self, returned: Any) -> tuple[dict[str, Any], Any]:
        dx, given = returned, None
        if isinstance(returned, tuple) and len(returned) == 2 and isinstance(returned[1], Mapping):
            dx, given = returned
        if callable(self.grads) and not isinstance(self.grads, Mapping):
            given = self.grads(self.obj)
        out = {}
        for name in self.param_names:
            if given is not None and name in given:
                out[name] = np.array(given[name], copy=True)
                continue
            where = self._locate(name)
            if where is None:
                raise GradientStructureError(
                    f"cannot find the gradient of {name} on {self.__name__} after backward(): "
                    f"looked for grads[{name!r}], dparams[{name!r}] and attributes "
                    f"{[p.format(name, cap=name[:1].upper() + name[1:]) for p in _GRAD_PATTERNS]}"
                    f". Pass grads={{{name!r}: 'attribute_name'}} or grads=lambda obj: {{...}}."
                )
            holder, key = where
            value = holder[key] if isinstance(holder, dict) else getattr(holder, key)
            out[name] = np.array(value, copy=True)
        return out, dx


def stateful_layer(
    obj: Any,
    *,
    params: Sequence[str] | None = None,
    grads: Mapping[str, str] | Callable[[Any], Mapping[str, Any]] | None = None,
) -> StatefulLayer:
    """Wrap a layer object with ``forward(x)`` and ``backward(dout)`` that keeps its own cache.

    Args:
        obj: the layer; ``obj.backward(dout)`` returns ``dx`` (or ``(dx, grads_dict)``, or
            ``None`` for a first layer) and stores parameter gradients.
        params: the parameter names; by default the keys of ``obj.params`` when it is a dict.
            Values live in ``obj.params[name]`` or as attributes ``obj.<name>``.
        grads: where gradients are stored, as ``{param: attribute}`` or a function
            ``obj -> {param: gradient}``; by default ``obj.grads[name]``, ``obj.dparams[name]``,
            or an attribute ``d<name>``, ``d_<name>``, ``grad_<name>``, ``<name>_grad``,
            ``d<Name>``.

    Returns:
        A layer for :func:`gradcheck.check_layer`, called with ``params={"W": W, ...}`` and ``x``.

    Examples:
        >>> import numpy as np, gradcheck as gc
        >>> class Linear:
        ...     def __init__(self, W): self.W = W
        ...     def forward(self, x):
        ...         self.x = x
        ...         return x @ self.W
        ...     def backward(self, dout):
        ...         self.dW = self.x.T @ dout
        ...         return dout @ self.W.T
        >>> rng = np.random.default_rng(0)
        >>> lin = Linear(rng.normal(size=(3, 2)))
        >>> gc.check_layer(gc.stateful_layer(lin, params=["W"]), {"W": lin.W},
        ...                rng.normal(size=(4, 3))).passed
        True
    """
    if params is None:
        store = getattr(obj, "params", None)
        if not isinstance(store, dict):
            raise InvalidArgument(
                f"{type(obj).__name__} has no params dict: name its parameters, e.g. "
                "gc.stateful_layer(layer, params=['W', 'b'])."
            )
        params = list(store)
    for name in ("forward", "backward"):
        if not callable(getattr(obj, name, None)):
            raise InvalidArgument(f"{type(obj).__name__} has no {name}() method.")
    return StatefulLayer(obj, params, grads)


def loss_and_grads(
    fn: Callable[..., Any], names: Sequence[str] | None = None,
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Split ``fn(params, *args) -> (loss, grads, ...)`` into ``(fun, grad)`` for check_grad.

    ``fn`` may return ``(loss, grads)`` with ``grads`` shaped like ``params``, or — as
    Karpathy's min-char-rnn does — ``(loss, dW1, dW2, ..., extra...)`` with one gradient per
    parameter leaf in order, followed by anything else (a final hidden state), which is ignored.

    ``names`` names the parameter leaves in reports and messages (one per leaf, in order), for
    tuple or list ``params`` whose leaves would otherwise be ``[0]``, ``[1]``, …  Without it the
    names are read from ``fn``'s code when every ``return`` lists plain names after the loss
    (``return loss, dWxh, dWhh, dby, hs[T]`` names the leaves ``Wxh``, ``Whh``, ``by``: a common
    ``d`` / ``grad_`` prefix or ``_grad`` suffix is dropped).  A dict's keys are kept as they are.

    Examples:
        >>> import numpy as np, gradcheck as gc
        >>> def loss_fun(params, x):
        ...     W, b = params
        ...     y = x @ W + b
        ...     return 0.5 * np.sum(y ** 2), x.T @ y, y.sum(0), y[-1]
        >>> rng = np.random.default_rng(0)
        >>> params = (rng.normal(size=(3, 2)), np.zeros(2))
        >>> gc.check_grad(*gc.loss_and_grads(loss_fun), params, rng.normal(size=(4, 3))).passed
        True
    """
    name = getattr(fn, "__name__", "loss_and_grads")

    def fun(params: Any, *args: Any) -> Any:
        out = fn(params, *args)
        _expect_tuple(out, name)
        return out[0]

    def grad(params: Any, *args: Any) -> Any:
        out = fn(params, *args)
        _expect_tuple(out, name)
        n = len(flatten(params)[0])
        if len(out) == 2:
            return out[1]
        if len(out) - 1 < n:
            raise GradientStructureError(
                f"{name} returned {len(out) - 1} gradient(s) after the loss for {n} parameters."
            )
        return tuple(out[1 : 1 + n])

    fun.__name__, grad.__name__ = name, name
    if names is not None:
        names = [str(n) for n in names]
        if len(set(names)) != len(names) or not all(names):
            raise InvalidArgument(f"loss_and_grads(..., names={names!r}): give distinct, "
                                  "non-empty names, one per parameter leaf.")
    fun.__gradcheck_names__ = functools.partial(_leaf_names, fn, names)  # type: ignore[attr-defined]
    fun.__gradcheck_source__ = fn  # type: ignore[attr-defined]
    # The automatic JAX twin of ``fun`` is ``fun`` over the twin of the user's ``fn``.
    fun.__gradcheck_twin__ = lambda translate: loss_and_grads(translate(fn))[0]  # type: ignore[attr-defined]
    return fun, grad


def _leaf_names(fn: Callable[..., Any], given: Sequence[str] | None, n: int, positional: bool
                ) -> list[str] | None:
    """The names of ``n`` parameter leaves: ``given`` (its length must be ``n``), else for
    ``positional`` leaves (of a tuple or list, named ``[0]``, ``[1]``, …) those read from ``fn``'s
    ``return`` statements, else ``None`` (the tree's own paths)."""
    if given is not None:
        if len(given) != n:
            raise InvalidArgument(f"loss_and_grads(..., names={list(given)!r}) gives {len(given)} "
                                  f"names for {n} parameter leaves: give one name per leaf, in order.")
        return list(given)
    read = _returned_names(fn) if positional else None
    return _strip(read[:n]) if read is not None and len(read) >= n else None


def _returned_names(fn: Callable[..., Any]) -> list[str] | None:
    """``[Wxh, Whh]`` from ``return loss, dWxh, dWhh, ...`` when every ``return`` of ``fn``
    lists the same plain names after the loss; ``None`` when the code is not readable or says
    nothing certain (``return loss, grads``, a computed expression, returns that differ)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return None
    body = tree.body[0] if tree.body and isinstance(tree.body[0], ast.FunctionDef) else None
    if body is None:
        return None
    found: set[tuple[str, ...]] = set()
    stack: list[ast.AST] = list(ast.iter_child_nodes(body))
    while stack:  # the function's own returns, not those of functions defined inside it
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Return) and node.value is not None:
            if not isinstance(node.value, ast.Tuple) or len(node.value.elts) < 3:
                return None
            names = []
            for elt in node.value.elts[1:]:
                if not isinstance(elt, ast.Name):
                    break
                names.append(elt.id)
            if len(names) < 2:
                return None
            found.add(tuple(names))
    return list(found.pop()) if len(found) == 1 else None


def _strip(names: list[str]) -> list[str] | None:
    """``dWxh, dby`` → ``Wxh, by``: a prefix or suffix common to every gradient's name dropped
    (``None`` when the names are not distinct)."""
    if len(set(names)) != len(names):
        return None
    for prefix in ("grad_", "d_", "d"):
        if all(n.startswith(prefix) and len(n) > len(prefix) for n in names):
            names = [n[len(prefix):] for n in names]
            break
    else:
        for suffix in ("_grad", "_g"):
            if all(n.endswith(suffix) and len(n) > len(suffix) for n in names):
                names = [n[: -len(suffix)] for n in names]
                break
    return names


def _expect_tuple(out: Any, name: str) -> None:
    if not isinstance(out, tuple | list) or len(out) < 2:
        raise InvalidArgument(
            f"{name} should return (loss, grads) or (loss, *grads); it returned "
            f"{type(out).__name__}."
        )
