"""Forward mode: ``check_jvp`` checks a hand-derived Jacobian-vector product.

``fun(params, *args)`` returns an array (or a pytree of arrays) ``y``; ``jvp(params, tangents,
*args)`` returns the output tangent ``J·v`` for parameter tangents ``v`` shaped like ``params``.

The check runs on the gradient engine, with its three sources, error estimates, localisation,
diagnosis and detection power.  A seeded output cotangent ``ȳ`` (exactly representable in
``y``'s dtype) turns ``fun`` into the scalar ``L(θ) = ⟨ȳ, fun(θ)⟩``, whose gradient is ``Jᵀȳ``.
The hand side of that gradient is built column by column from the hand JVP,

    (Jᵀȳ)_i = ⟨ȳ, jvp(θ, e_i)⟩        one jvp call per parameter entry,

so an entry whose Jacobian column is wrong is named like a wrong gradient entry, with its
shape diagnosed (a transposed weight, a missing term, a sign).  The references are finite
differences of ``L`` (directional derivatives of ``fun`` along the seeded tangents and the
entries: complex step where the forward is complex-safe) and JAX: the derivative of ``L`` on
JAX arrays, or of its automatic twin, which equals ``⟨ȳ, jax.jvp(fun, e_i)⟩`` column by column.
A random ``ȳ`` sees any wrong column with probability one; the seeded tangents of screening
check ``⟨ȳ, J v⟩`` along whole directions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from gradcheck import _hygiene as hy
from gradcheck import check, problem
from gradcheck._tree import flatten, path_name
from gradcheck.errors import GradientStructureError, InvalidArgument, NonFiniteError
from gradcheck.measure import probe_seed
from gradcheck.options import validate
from gradcheck.result import CheckResult

__all__ = ["JVP_COLUMNS_MAX", "check_jvp", "check_layer_jvp", "outputs"]

#: The most parameter entries a JVP check builds column by column (one jvp call each).
JVP_COLUMNS_MAX = 65536
#: The seed salt of the output cotangent ȳ.
SALT_COTANGENT = 0x7A


def outputs(y: Any, what: str) -> list[np.ndarray]:
    """The float arrays of an output pytree (validated: real, float, finite)."""
    leaves, _ = flatten(y)
    if not leaves:
        raise InvalidArgument(f"{what} returned no arrays: expected an array or a pytree of them.")
    out = []
    for leaf in leaves:
        arr = np.asarray(leaf.value)
        name = f"output {path_name(leaf.path)}" if leaf.path else "output"
        if arr.dtype.kind == "c":
            raise InvalidArgument(f"{what} returned a complex {name} (dtype {arr.dtype}): return "
                                  "a real array (y.real or abs(y)), whichever your JVP differentiates.")
        if arr.dtype.kind != "f":
            raise InvalidArgument(f"{what} returned dtype {arr.dtype}; expected float arrays.")
        bad = hy.first_nonfinite(arr)
        if bad is not None:
            raise NonFiniteError(f"{what} returned {bad[1]} at {list(bad[0])} of its output: "
                                 "check the point.")
        out.append(arr)
    return out


def _contract(y: Any, cot: Sequence[np.ndarray]) -> Any:
    """``⟨ȳ, y⟩`` over the output pytree, in ``y``'s namespace (numpy, or JAX under tracing)."""
    leaves, _ = flatten(y)
    if len(leaves) != len(cot):
        raise GradientStructureError(f"the output has {len(leaves)} arrays here and {len(cot)} at "
                                     "the given point: fun must return the same structure.")
    total: Any = 0.0
    for leaf, c in zip(leaves, cot, strict=True):
        total = total + problem.contract(leaf.value, c)
    return total


def _loss(fun: Callable[..., Any], cot: Sequence[np.ndarray]) -> Callable[..., Any]:
    def loss(params: Any, *args: Any) -> Any:
        return _contract(fun(params, *args), cot)

    loss.__name__ = getattr(fun, "__name__", "fun")
    loss.__gradcheck_twin__ = lambda translate: _loss(translate(fun), cot)  # type: ignore[attr-defined]
    loss.__gradcheck_source__ = fun  # type: ignore[attr-defined]
    return loss


def _columns(jvp: Callable[..., Any], cot: Sequence[np.ndarray], shapes: Sequence[tuple[int, ...]],
             what: str) -> Callable[..., Any]:
    """The hand ``Jᵀȳ``, one jvp call per parameter entry: ``(Jᵀȳ)_i = ⟨ȳ, jvp(θ, e_i)⟩``."""
    def grad(params: Any, *args: Any) -> Any:
        leaves, treedef = flatten(params)
        values = [np.asarray(leaf.value) for leaf in leaves]
        out = []
        for k, value in enumerate(values):
            col = np.zeros(value.size)
            native: list[np.dtype[Any]] = []
            for i in range(value.size):
                tangent = [np.zeros_like(v) for v in values]
                tangent[k].flat[i] = 1  # C order whatever the layout (reshape copies F order)
                got = hy.call_user(jvp, what, params, treedef.unflatten(tangent), *args,
                                   where="computing the hand JVP")
                col[i] = float(np.asarray(_checked_tangent(got, cot, shapes, what)))
                native += [np.asarray(leaf.value).dtype for leaf in flatten(got)[0]]
            # the columns in the dtype the JVP computed in (a float32 JVP's are float32), not the
            # float64 of their contraction with ȳ: the leaf's dtype and tolerances are the user's
            floats = [d for d in native if d.kind == "f"]
            dtype = np.result_type(*floats) if floats else np.dtype(np.float64)
            out.append(col.reshape(value.shape).astype(dtype))
        return treedef.unflatten(out)

    grad.__name__ = getattr(jvp, "__name__", "jvp")
    return grad


def _checked_tangent(got: Any, cot: Sequence[np.ndarray], shapes: Sequence[tuple[int, ...]],
                     what: str) -> Any:
    leaves, _ = flatten(got)
    if len(leaves) != len(cot):
        raise GradientStructureError(f"{what} returned {len(leaves)} arrays for an output of "
                                     f"{len(cot)}: return the output tangent, shaped like fun's output.")
    for n, (leaf, shape) in enumerate(zip(leaves, shapes, strict=True)):
        got_shape = np.shape(leaf.value)
        if got_shape != shape:
            where = f" (output array {n})" if len(shapes) > 1 else ""
            raise GradientStructureError(f"{what} returned a tangent of shape {got_shape}{where}; "
                                         f"fun's output has shape {shape}: return J·v shaped like "
                                         "the output.")
    return _contract(got, cot)


def check_jvp(fun: Callable[..., Any], jvp: Callable[..., Any], params: Any, *args: Any,
              **options: Any) -> CheckResult:
    """Check a hand-derived Jacobian-vector product against finite differences and JAX.

    Args:
        fun: ``fun(params, *args) -> y``, an array or a pytree of arrays.
        jvp: ``jvp(params, tangents, *args) -> J·v`` for ``tangents`` shaped like ``params``,
            shaped like ``y``.
        params: a dict/list/tuple pytree of float arrays; every leaf's Jacobian columns are checked.
        *args: passed through to ``fun`` and ``jvp`` unchanged.
        **options: see :class:`~gradcheck.CheckOptions`; ``jax_fun`` is a JAX twin of ``fun``.

    Returns:
        A :class:`~gradcheck.CheckResult` of kind ``check_jvp``: a leaf fails where its entries'
        Jacobian columns are wrong (contracted with a seeded output cotangent ȳ; see the module
        docstring).

    Examples:
        >>> import numpy as np, gradcheck as gc
        >>> def f(p, x): return np.tanh(x @ p["W"])
        >>> def f_jvp(p, t, x):
        ...     y = np.tanh(x @ p["W"])
        ...     return (1 - y ** 2) * (x @ t["W"])
        >>> rng = np.random.default_rng(0)
        >>> gc.check_jvp(f, f_jvp, {"W": rng.normal(size=(3, 2))}, rng.normal(size=(4, 3))).passed
        True
    """
    opts = validate(options)
    label = str(opts.name or getattr(fun, "__name__", "fun"))
    pristine = hy.copy_tree({"params": params, "args": list(args)})
    y0 = hy.call_user(fun, f"{label}(params, *args)", pristine["params"], *pristine["args"],
                      where="at the given point")
    ys = outputs(y0, f"{label}(params, *args)")
    rng = np.random.default_rng(probe_seed(opts.seed, 0, SALT_COTANGENT))
    # ȳ exactly representable in y's dtype: the hand side and the references see the same ȳ.
    cot = [rng.standard_normal(y.shape).astype(y.dtype).astype(np.float64) for y in ys]
    n = sum(np.size(leaf.value) for leaf in flatten(params)[0])
    if n > JVP_COLUMNS_MAX:
        raise InvalidArgument(f"check_jvp builds the hand Jacobian column by column: {n} parameter "
                              f"entries is more than {JVP_COLUMNS_MAX} jvp calls; check a smaller "
                              "problem, or the gradient of ⟨ȳ, fun⟩ with check_grad.")
    loss = _loss(fun, cot)
    grad = _columns(jvp, cot, [y.shape for y in ys], f"{getattr(jvp, '__name__', 'jvp')}"
                    "(params, tangents, *args)")
    run_opts = replace(opts, name=label,
                       jax_fun=_loss(opts.jax_fun, cot) if opts.jax_fun is not None else None)
    prob = problem.grad_problem(loss, grad, params, args, run_opts)
    shown = ", ".join(str(y.shape) for y in ys)
    note = (f"forward mode: the hand JVP's Jacobian columns, one jvp call per parameter entry ({n} "
            f"in all), contracted with a seeded output cotangent ȳ (output {shown}), against the "
            "finite differences and JAX derivative of ⟨ȳ, fun⟩")
    prob = replace(prob, kind="check_jvp", notes=(note, *prob.notes))
    return check.run(prob, run_opts)


def _takes_input_tangent(jvp: Callable[..., Any]) -> bool:
    """Whether ``jvp`` accepts a fourth positional argument (the input tangent ``dx``)."""
    try:
        inspect.signature(jvp).bind(None, None, None, None)
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): assume the zoo's convention
        return True
    return True


def _layer_split(joint: Any, keyed: bool) -> tuple[Any, Any]:
    if keyed:
        return {k: v for k, v in joint.items() if k != "x"}, joint["x"]
    return joint[0], joint[1]


def _layer_fun(forward: Callable[..., Any], x: Any, with_x: bool, keyed: bool,
               label: str) -> Callable[..., Any]:
    """``fun(joint) = forward(params, x)`` over the checked tree (``x`` in it when ``with_x``)."""
    def fun(joint: Any) -> Any:
        p, xx = _layer_split(joint, keyed) if with_x else (joint, x)
        return forward(p, xx)

    fun.__name__ = label
    fun.__gradcheck_twin__ = lambda translate: _layer_fun(translate(forward), x, with_x, keyed,  # type: ignore[attr-defined]
                                                          label)
    fun.__gradcheck_source__ = forward  # type: ignore[attr-defined]
    return fun


def check_layer_jvp(layer: Any, params: Any, x: Any, **options: Any) -> CheckResult:
    """Check a layer's hand JVP, in its parameters and its input: :func:`check_jvp` for layers.

    The sibling of :func:`gradcheck.check_layer` for forward mode (the zoo's convention):
    ``layer.jvp(params, x, dparams, dx) -> ẏ`` is the tangent of ``layer.forward(params, x)``
    for the parameter tangents ``dparams`` (shaped like ``params``) and the input tangent ``dx``
    (shaped like ``x``).  Both are checked, the input as the leaf ``x``; a ``jvp(params, x,
    dparams)`` without ``dx`` has its parameter columns checked only (the result's notes say
    so).  Which mode (``mode=``) the engine uses does not change what is checked.

    Args:
        layer: an object with ``forward(params, x)`` and ``jvp(params, x, dparams[, dx])``.
        params: a pytree of float arrays (a dict gets ``x`` as one more key, unless it has one).
        x: the input, a float array.
        **options: see :class:`~gradcheck.CheckOptions`; ``jax_fun(params, x)`` is a JAX twin of
            ``forward``.

    Returns:
        A :class:`~gradcheck.CheckResult` of kind ``check_jvp``, named after the layer's class.

    Examples:
        >>> import numpy as np, gradcheck as gc
        >>> class Tanh:
        ...     def forward(self, p, x): return np.tanh(x @ p["W"])
        ...     def jvp(self, p, x, dp, dx):
        ...         y = np.tanh(x @ p["W"])
        ...         return (1 - y ** 2) * (x @ dp["W"] + dx @ p["W"])
        >>> rng = np.random.default_rng(0)
        >>> res = gc.check_layer_jvp(Tanh(), {"W": rng.normal(size=(3, 2))}, rng.normal(size=(4, 3)))
        >>> res.passed, [leaf.name for leaf in res.leaves]
        (True, ['W', 'x'])
    """
    opts = validate(options)
    for method in ("forward", "jvp"):
        if not callable(getattr(layer, method, None)):
            raise InvalidArgument(f"check_layer_jvp: {type(layer).__name__} has no {method}() method; "
                                  "a layer needs forward(params, x) and jvp(params, x, dparams[, dx]) "
                                  "(for a function, use check_jvp(fun, jvp, params, *args)).")
    own = vars(layer).get("__name__") if hasattr(layer, "__dict__") else None  # an adapter's
    label = str(opts.name or (own if isinstance(own, str) and own else type(layer).__name__))
    with_x = _takes_input_tangent(layer.jvp)
    keyed = isinstance(params, dict) and "x" not in params
    joint: Any = ({**params, "x": x} if keyed else (params, x)) if with_x else params
    fun = _layer_fun(layer.forward, x, with_x, keyed, label)

    def jvp(j: Any, t: Any) -> Any:
        if not with_x:
            return layer.jvp(j, x, t)
        p, xx = _layer_split(j, keyed)
        tp, tx = _layer_split(t, keyed)
        return layer.jvp(p, xx, tp, tx)

    jvp.__name__ = f"{label}.jvp"
    jax_fun = opts.jax_fun
    if jax_fun is not None:
        jax_fun = _layer_fun(jax_fun, x, with_x, keyed, label)
    res = check_jvp(fun, jvp, joint, **{**options, "name": label, "jax_fun": jax_fun})
    if not with_x:
        note = (f"{label}.jvp takes no input tangent (jvp(params, x, dparams)): the Jacobian in x "
                "was not checked; accept dx as a fourth argument to have it checked")
        res = replace(res, notes=(*res.notes, note))
    return res
