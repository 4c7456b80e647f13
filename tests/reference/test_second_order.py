"""Second order: the zoo's hand Hessian-vector products (Pearlmutter's R-operator) and Gauss–Newton
products for ``Dense`` and ``MLP``.

References are JAX's, always in float64 (inside ``with jax.enable_x64(True):``, never a global
config change) at the float32 case's point upcast exactly; a float32 hand product is judged with
a float32 tolerance.  Each ``*_hvp`` equals ``jax.jvp(jax.grad(loss), (params,), (v,))`` and is
symmetric (``⟨u, H v⟩ = ⟨v, H u⟩``); each ``*_grad`` equals ``jax.grad(loss)``; each ``*_gnvp``
equals JAX's ``Jᵀ H_ℓ J v`` (``jax.jvp`` of the forward, the loss's Hessian in the output,
``jax.vjp`` back), is positive semi-definite, and differs from the Hessian on a nonlinear network
(equal on a linear one).  Through gradcheck, ``gc.check_hvp`` passes the references and fails,
blaming the hand product on exactly the leaves it breaks, on planted bugs written here
(:func:`planted_dense_hvp`, :func:`planted_mlp_hvp`, and the Gauss–Newton product passed off as
the Hessian, which the check's notes name).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck as gc
from reference import dense, mlp
from reference.activations import Softmax
from reference.dense import _output_hvp
from reference.losses import SSE, SoftmaxCrossEntropy
from reference.mlp import n_layers
from tests._profile import examples

DTYPES = (np.float64, np.float32)
#: Relative tolerance (to the largest entry over all leaves of the reference) of a hand product.
TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-3}
CLEARLY_WRONG = 1e-3
SEEDS = st.integers(0, 2**32 - 1)
EXAMPLES = 10


# Few distinct shapes: nearly all the cost of an example is JAX compiling its eager primitives for
# a shape it has not seen (about a second), so the strategies draw from small pools of shapes
# (and vary seeds, activations, dtypes freely).
BATCHES = st.sampled_from((3, 1))
DENSE_SHAPES = st.sampled_from(((4, 5), (3, 1)))  # (d_in, d_out); the first is make_case's default
MLP_SIZES = st.sampled_from(((4, 5, 3), (1, 3, 4, 2)))
Params = dict[str, Any]


def _f64(a: Any) -> Any:
    """A float array as float64 (exactly: float32 values are float64 values); labels unchanged."""
    a = np.asarray(a)
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def _tree(tree: Params) -> Params:
    """A tree of JAX float64 arrays; call inside ``jax.enable_x64(True)``."""
    return {k: jnp.asarray(_f64(v)) for k, v in tree.items()}


def _np(tree: Params) -> Params:
    return {k: np.asarray(v, np.float64) for k, v in tree.items()}


def _direction(rng: np.random.Generator, params: Params) -> Params:
    return {k: rng.standard_normal(np.shape(v)).astype(np.asarray(v).dtype) for k, v in params.items()}


def _dot(a: Params, b: Params) -> float:
    return float(sum(np.sum(np.asarray(a[k], np.float64) * np.asarray(b[k], np.float64)) for k in a))


def _abs_dot(a: Params, b: Params) -> float:
    return float(sum(np.sum(np.abs(np.asarray(a[k], np.float64) * np.asarray(b[k], np.float64))) for k in a))


def assert_tree_close(got: Params, want: Params, dtype: Any, what: str) -> None:
    assert got.keys() == want.keys(), what
    tol = TOL[np.dtype(dtype)]
    scale = max(float(np.max(np.abs(np.asarray(v)), initial=0.0)) for v in want.values())
    for k in want:
        assert np.shape(got[k]) == np.shape(want[k]), f"{what}: {k}"
        np.testing.assert_allclose(np.asarray(got[k], np.float64), np.asarray(want[k], np.float64),
                                   rtol=tol, atol=tol * max(scale, 1e-30), err_msg=f"{what}: {k}")


def jax_grad(loss: Callable[..., Any], params: Params, *args: Any) -> Params:
    """``jax.grad(loss)``, in float64 at the (upcast) point."""
    args = tuple(_f64(a) for a in args)
    with jax.enable_x64(True):
        return _np(jax.grad(lambda q: loss(q, *args))(_tree(params)))


def jax_hvp(loss: Callable[..., Any], params: Params, v: Params, *args: Any) -> Params:
    """``jax.jvp(jax.grad(loss), (params,), (v,))``: the exact H v, in float64."""
    args = tuple(_f64(a) for a in args)
    with jax.enable_x64(True):
        _, hv = jax.jvp(jax.grad(lambda q: loss(q, *args)), (_tree(params),), (_tree(v),))
        return _np(hv)


def jax_gnvp(forward: Callable[..., Any], out_loss: Callable[[Any], Any], params: Params, v: Params,
             x: Any) -> Params:
    """``Jᵀ H_ℓ J v``: ``J v`` by ``jax.jvp`` of the forward, ``H_ℓ`` by ``jax.jvp(jax.grad)`` of
    the loss in the output, ``Jᵀ`` by ``jax.vjp``; in float64."""
    x = _f64(x)
    with jax.enable_x64(True):
        p = _tree(params)
        y, jv = jax.jvp(lambda q: forward(q, x), (p,), (_tree(v),))
        _, hjv = jax.jvp(jax.grad(out_loss), (y,), (jv,))
        _, pullback = jax.vjp(lambda q: forward(q, x), p)
        return _np(pullback(hjv)[0])


def check_products(layer: Any, loss: str, params: Params, x: Any, d: Any, seed: int, what: str, *,
                   grad_and_gauss_newton: bool = True) -> None:
    """H v against JAX and symmetric; G v (where there is one) PSD; and, unless
    ``grad_and_gauss_newton`` is false (the property tests: each JAX program costs a compile
    per shape), the gradient and G v against JAX too."""
    rng = np.random.default_rng(seed + 1)
    v, u = _direction(rng, params), _direction(rng, params)
    fun, grad, hvp = (getattr(layer, f"{loss}_{s}") for s in ("loss", "grad", "hvp"))
    dtype = np.asarray(x).dtype
    g = grad(params, x, d)
    assert all(g[k].dtype == params[k].dtype for k in params), what
    if grad_and_gauss_newton:
        assert_tree_close(g, jax_grad(fun, params, x, d), dtype, f"{what} grad")
    hv, hu = hvp(params, v, x, d), hvp(params, u, x, d)
    assert all(hv[k].dtype == params[k].dtype and hv[k].shape == params[k].shape for k in params), what
    assert_tree_close(hv, jax_hvp(fun, params, v, x, d), dtype, f"{what} H v")
    assert abs(_dot(u, hv) - _dot(v, hu)) <= 10 * TOL[dtype] * max(_abs_dot(u, hv) + _abs_dot(v, hu), 1e-30), (
        f"{what}: <u, H v> = {_dot(u, hv)!r} but <v, H u> = {_dot(v, hu)!r}"
    )
    gnvp = getattr(layer, f"{loss}_gnvp", None)
    if gnvp is None:
        return
    gv = gnvp(params, v, x, d)
    if grad_and_gauss_newton:
        lo, d64 = (SSE() if loss == "sse" else SoftmaxCrossEntropy("mean")), _f64(d)
        assert_tree_close(gv, jax_gnvp(layer.forward, lambda y: lo.forward(y, d64), params, v, x), dtype,
                          f"{what} G v")
    assert _dot(v, gv) >= -10 * TOL[dtype] * max(_abs_dot(v, gv), 1e-30), f"{what}: <v, G v> < 0"


# ------------------------------------------------------------------------------- Dense


@settings(max_examples=examples(EXAMPLES))
@given(seed=SEEDS, dtype=st.sampled_from(DTYPES),
       activation=st.sampled_from(("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax")),
       batch=BATCHES, shape=DENSE_SHAPES)
def test_dense_sse_hvp(seed: int, dtype: Any, activation: str, batch: int, shape: tuple[int, int]) -> None:
    d_in, d_out = shape
    rng = np.random.default_rng(seed)
    layer, params, x = dense.make_case(rng, dtype=dtype, batch=batch, d_in=d_in, d_out=d_out,
                                       activation=activation)
    target = rng.standard_normal((batch, d_out)).astype(dtype)
    check_products(layer, "sse", params, x, target, seed, f"Dense({activation!r}) {np.dtype(dtype).name} seed={seed}",
                   grad_and_gauss_newton=False)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"])
def test_dense_sse_grad_hvp_and_gauss_newton_every_activation(activation: str, dtype: Any) -> None:
    rng = np.random.default_rng(8)
    layer, params, x = dense.make_case(rng, dtype=dtype, activation=activation)
    target = rng.standard_normal((3, 5)).astype(dtype)
    check_products(layer, "sse", params, x, target, 8, f"Dense({activation!r}) {np.dtype(dtype).name}")


def test_dense_module_functions_are_the_methods() -> None:
    rng = np.random.default_rng(0)
    layer, params, x = dense.make_case(rng, activation="sigmoid")
    t, v = rng.standard_normal((3, 5)), _direction(rng, params)
    assert float(dense.sse_loss(params, x, t, activation="sigmoid")) == float(layer.sse_loss(params, x, t))
    for name, args in (("sse_grad", (params, x, t)), ("sse_hvp", (params, v, x, t)), ("sse_gnvp", (params, v, x, t))):
        got, want = getattr(dense, name)(*args, activation="sigmoid"), getattr(layer, name)(*args)
        for k in params:
            np.testing.assert_array_equal(got[k], want[k])


def test_dense_gauss_newton_is_the_hessian_exactly_when_the_layer_is_linear() -> None:
    rng = np.random.default_rng(1)
    for activation, same in (("identity", True), ("tanh", False)):
        layer, params, x = dense.make_case(rng, activation=activation)
        t, v = rng.standard_normal((3, 5)), _direction(rng, params)
        hv, gv = layer.sse_hvp(params, v, x, t), layer.sse_gnvp(params, v, x, t)
        diff = max(float(np.max(np.abs(hv[k] - gv[k]))) for k in params)
        assert (diff < 1e-12) == same, (activation, diff)
        # at zero residual (t = y) the dy ⊙ g'' term vanishes: G = H for any g
        y = layer.forward(params, x)
        hv0, gv0 = layer.sse_hvp(params, v, x, y), layer.sse_gnvp(params, v, x, y)
        assert max(float(np.max(np.abs(hv0[k] - gv0[k]))) for k in params) < 1e-12


# --------------------------------------------------------------------------------- MLP


@st.composite
def mlp_cases(draw: st.DrawFn, *, loss: str) -> tuple[Any, Params, Any, Any, int, str]:
    sizes = draw(MLP_SIZES)
    if loss == "xent" and sizes[-1] == 1:
        sizes = (*sizes[:-1], 2)  # at least two classes
    # one hidden activation for all hidden layers (fewer distinct JAX programs; mixed tuples are
    # exercised by test_mlp_module_functions_are_the_methods)
    hidden = draw(st.sampled_from(("tanh", "sigmoid", "relu", "leaky_relu", "identity", "softmax")))
    outputs = ("identity", "sigmoid", "softmax") if loss == "sse" else ("identity", "tanh")
    output = draw(st.sampled_from(outputs))
    seed, dtype, batch = draw(SEEDS), draw(st.sampled_from(DTYPES)), draw(BATCHES)
    rng = np.random.default_rng(seed)
    layer, params, x = mlp.make_case(rng, dtype=dtype, batch=batch, sizes=sizes, hidden_activation=hidden,
                                     output_activation=output)
    d = (rng.standard_normal((batch, sizes[-1])).astype(dtype) if loss == "sse"
         else rng.integers(0, sizes[-1], batch))
    return layer, params, x, d, seed, f"MLP{sizes} {hidden}->{output} {np.dtype(dtype).name} seed={seed}"


@settings(max_examples=examples(EXAMPLES))
@given(case=mlp_cases(loss="sse"))
def test_mlp_sse_hvp(case: tuple[Any, Params, Any, Any, int, str]) -> None:
    layer, params, x, d, seed, what = case
    check_products(layer, "sse", params, x, d, seed, what, grad_and_gauss_newton=False)


@settings(max_examples=examples(EXAMPLES))
@given(case=mlp_cases(loss="xent"))
def test_mlp_xent_hvp_and_gauss_newton(case: tuple[Any, Params, Any, Any, int, str]) -> None:
    layer, params, x, d, seed, what = case
    check_products(layer, "xent", params, x, d, seed, what, grad_and_gauss_newton=False)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("hidden", "output"), [(("tanh", "sigmoid"), "identity"), (("relu", "softmax"), "tanh")])
def test_mlp_xent_grad_hvp_and_gauss_newton(hidden: tuple[str, str], output: str, dtype: Any) -> None:
    rng = np.random.default_rng(10)
    layer, params, x = mlp.make_case(rng, dtype=dtype, sizes=(4, 5, 5, 3), hidden_activation=hidden,
                                     output_activation=output)
    check_products(layer, "xent", params, x, rng.integers(0, 3, 3), 10, f"MLP {hidden}->{output} xent")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("hidden", "output"), [(("tanh", "sigmoid"), "identity"), (("relu", "softmax"), "sigmoid"),
                                                (("leaky_relu", "identity"), "softmax")])
def test_mlp_sse_grad_hvp_and_gauss_newton(hidden: tuple[str, str], output: str, dtype: Any) -> None:
    rng = np.random.default_rng(9)
    layer, params, x = mlp.make_case(rng, dtype=dtype, sizes=(4, 5, 5, 3), hidden_activation=hidden,
                                     output_activation=output)
    target = rng.standard_normal((3, 3)).astype(dtype)
    check_products(layer, "sse", params, x, target, 9, f"MLP {hidden}->{output} {np.dtype(dtype).name}")


def test_xent_is_the_batch_mean() -> None:
    layer, params, x = mlp.make_case(np.random.default_rng(2), batch=4, sizes=(3, 4, 3))
    labels = np.array([0, 2, 1, 2])
    y = layer.forward(params, x)
    logp = y - np.log(np.sum(np.exp(y), axis=1, keepdims=True))
    assert float(layer.xent_loss(params, x, labels)) == pytest.approx(-np.mean(logp[np.arange(4), labels]))


def test_xent_gauss_newton_differs_from_the_hessian_on_a_nonlinear_mlp() -> None:
    for seed in range(3):
        rng = np.random.default_rng(seed)
        layer, params, x = mlp.make_case(rng, batch=4, sizes=(3, 4, 3), hidden_activation="tanh")
        labels, v = rng.integers(0, 3, 4), _direction(rng, params)
        hv, gv = layer.xent_hvp(params, v, x, labels), layer.xent_gnvp(params, v, x, labels)
        norm = np.sqrt(_dot(hv, hv))
        assert np.sqrt(_dot({k: hv[k] - gv[k] for k in hv}, {k: hv[k] - gv[k] for k in hv})) > 1e-2 * norm
        xent = functools.partial(SoftmaxCrossEntropy("mean").forward, d=labels)
        assert_tree_close(gv, jax_gnvp(layer.forward, xent, params, v, x), np.float64, "G v")
        # ... and equal on a network linear in its parameters: one affine layer, identity output
        lin, lp, lx = mlp.make_case(rng, batch=4, sizes=(3, 3))
        lv = _direction(rng, lp)
        assert_tree_close(lin.xent_gnvp(lp, lv, lx, labels), lin.xent_hvp(lp, lv, lx, labels), np.float64,
                          "linear: G v = H v")


def test_the_hessian_is_not_psd_where_the_gauss_newton_product_is() -> None:
    """Along some directions the true Hessian of a nonlinear MLP has negative curvature; G never."""
    rng = np.random.default_rng(4)
    layer, params, x = mlp.make_case(rng, batch=4, sizes=(3, 4, 3), hidden_activation="tanh")
    labels = rng.integers(0, 3, 4)
    curvatures = []
    for _ in range(20):
        v = _direction(rng, params)
        curvatures.append((_dot(v, layer.xent_hvp(params, v, x, labels)),
                           _dot(v, layer.xent_gnvp(params, v, x, labels))))
    assert min(h for h, _ in curvatures) < 0 <= min(g for _, g in curvatures)


def test_mlp_module_functions_are_the_methods() -> None:
    rng = np.random.default_rng(5)
    kw: dict[str, Any] = {"hidden_activation": ("sigmoid", "tanh"), "output_activation": "identity"}
    layer, params, x = mlp.make_case(rng, sizes=(3, 4, 4, 2), **kw)
    t, labels, v = rng.standard_normal((3, 2)), rng.integers(0, 2, 3), _direction(rng, params)
    assert float(mlp.sse_loss(params, x, t, **kw)) == float(layer.sse_loss(params, x, t))
    assert float(mlp.xent_loss(params, x, labels, **kw)) == float(layer.xent_loss(params, x, labels))
    for name, args in (("sse_grad", (params, x, t)), ("sse_hvp", (params, v, x, t)),
                       ("sse_gnvp", (params, v, x, t)), ("xent_grad", (params, x, labels)),
                       ("xent_hvp", (params, v, x, labels)), ("xent_gnvp", (params, v, x, labels))):
        got, want = getattr(mlp, name)(*args, **kw), getattr(layer, name)(*args)
        assert list(got) == list(params), name
        for k in params:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{name}: {k}")
    for name in ("sse_loss", "sse_grad", "sse_hvp", "sse_gnvp", "xent_loss", "xent_grad", "xent_hvp", "xent_gnvp"):
        assert name in mlp.__all__ and (name in dense.__all__) == name.startswith("sse")


def test_xent_refuses_a_softmax_output_and_directions_must_be_complete() -> None:
    layer, params, x = mlp.make_case(np.random.default_rng(6), output_activation="softmax")
    with pytest.raises(ValueError, match="softmax inside the loss"):
        layer.xent_loss(params, x, np.array([0, 1, 2]))
    ok, _, _ = mlp.make_case(np.random.default_rng(6))
    v = _direction(np.random.default_rng(7), params)
    with pytest.raises(ValueError, match=r"v must have exactly the keys .* missing or None \['W0'\]"):
        ok.sse_hvp(params, {k: val for k, val in v.items() if k != "W0"}, x, np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"v\['b1'\] has shape"):
        ok.xent_gnvp(params, {**v, "b1": np.zeros(7)}, x, np.array([0, 1, 2]))


@pytest.mark.parametrize(("loss", "targets"), [(SSE("sum"), "real"), (SSE("mean"), "real"),
                                               (SoftmaxCrossEntropy("mean"), "labels"),
                                               (SoftmaxCrossEntropy("sum"), "labels"),
                                               (SoftmaxCrossEntropy("mean"), "probs")],
                         ids=["sse-sum", "sse-mean", "xent-mean-labels", "xent-sum-labels", "xent-mean-probs"])
def test_the_loss_hessian_in_the_output_is_jax(loss: Any, targets: str) -> None:
    """``H_ℓ v`` (the R{dy} every product here starts from) equals ``jax.jvp(jax.grad(ℓ))`` in y."""
    rng = np.random.default_rng(11)
    y, v = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    d = {"real": rng.standard_normal((4, 3)), "labels": rng.integers(0, 3, 4),
         "probs": Softmax().forward(rng.standard_normal((4, 3)))}[targets]
    with jax.enable_x64(True):
        _, want = jax.jvp(jax.grad(lambda yy: loss.forward(yy, d)), (jnp.asarray(y),), (jnp.asarray(v),))
    got = _output_hvp(loss, y, d, v)
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-12, atol=1e-14)
    assert _output_hvp(loss, y.astype(np.float32), d, v).dtype == np.float32
    with pytest.raises(ValueError, match="v has shape"):
        _output_hvp(loss, y, d, v[:1])


# ------------------------------------------------------- through gradcheck: planted bugs


def planted_dense_hvp(bug: str | None) -> Callable[..., Params]:
    """The SSE H·v of a tanh Dense layer written out by hand, with one planted ``bug``
    (``g' = 1 - y²``, ``g'' = -2y g'``; reference/dense.py's R-operator):

    * ``"g'' term dropped"``: ``R{delta} = R{y} ⊙ g'`` without ``(y - t) ⊙ g'' ⊙ R{net}`` (for one
      layer this is the Gauss–Newton product) — breaks ``W`` and ``b``;
    * ``"factor 2"``: ``2 H v`` (the ½ of the SSE forgotten) — breaks ``W`` and ``b``;
    * ``None``: the correct product.
    """

    def hvp(params: Params, v: Params, x: Any, target: Any) -> Params:
        _, y = dense.Dense("tanh").forward_cache(params, x)
        rnet = x @ v["W"] + v["b"]
        gp = 1 - y * y
        r_delta = rnet * gp * gp
        if bug != "g'' term dropped":
            r_delta = r_delta + (y - target) * (-2 * y * gp) * rnet
        if bug == "factor 2":
            r_delta = 2 * r_delta
        return {"W": x.T @ r_delta, "b": r_delta.sum(axis=0)}

    return hvp


def planted_mlp_hvp(layer: Any, loss: str, bug: str | None) -> Callable[..., Params]:
    """The MLP's R-operator H·v (reference/mlp.py's equations; ``loss`` ``"sse"`` or ``"xent"``,
    the mean softmax cross-entropy of integer labels) with one planted ``bug``:

    * ``"f'' term dropped"``: ``R{delta_i} = R{g_{i+1}} ⊙ f_i'`` without ``g_{i+1} ⊙ f_i'' ⊙
      R{net_i}`` — with an identity output, breaks the hidden layers' ``W0``, ``b0``;
    * ``"coupling delta V_Wᵀ dropped"``: ``R{g_i} = R{delta_i} W_iᵀ`` — breaks ``W0``, ``b0``;
    * ``"R{a}ᵀ delta dropped"``: ``R{dW_i} = a_iᵀ R{delta_i}`` — breaks ``W1`` (``R{a_0} = 0``);
    * ``None``: the correct product.
    """

    def hvp(params: Params, v: Params, x: Any, d: Any) -> Params:
        fs = layer.activations(n_layers(params))
        a, net, ra, rnet = layer.jvp_with_tangents(params, x, v)
        y = a[-1]
        if loss == "sse":
            g, rg = y - d, ra[-1]
        else:
            p = Softmax().forward(y)
            g = (p - np.eye(y.shape[1])[d]) / y.shape[0]
            rg = p * (ra[-1] - np.sum(p * ra[-1], axis=-1, keepdims=True)) / y.shape[0]
        out: Params = {}
        for i in reversed(range(len(fs))):
            delta = fs[i].backward(net[i], a[i + 1], g)
            if bug == "f'' term dropped":
                r_delta = fs[i].backward(net[i], a[i + 1], rg)
            else:
                r_delta = fs[i].backward_jvp(net[i], a[i + 1], g, rnet[i], rg)
            out[f"W{i}"] = a[i].T @ r_delta
            if bug != "R{a}ᵀ delta dropped":
                out[f"W{i}"] = out[f"W{i}"] + ra[i].T @ delta
            out[f"b{i}"] = r_delta.sum(axis=0)
            rg = r_delta @ params[f"W{i}"].T
            if bug != "coupling delta V_Wᵀ dropped":
                rg = rg + delta @ v[f"W{i}"].T
            g = delta @ params[f"W{i}"].T
        return {k: out[k] for k in params}

    return hvp


def _dense_problem() -> tuple[Params, tuple[Any, ...], dict[str, Callable[..., Any]]]:
    rng = np.random.default_rng(0)
    _, params, x = dense.make_case(rng, activation="tanh")
    kw = {"activation": "tanh"}
    return params, (x, rng.standard_normal((3, 5))), {
        "fun": functools.partial(dense.sse_loss, **kw), "grad": functools.partial(dense.sse_grad, **kw),
        "hvp": functools.partial(dense.sse_hvp, **kw)}


def _mlp_problem(loss: str) -> tuple[Any, Params, tuple[Any, ...], dict[str, Callable[..., Any]]]:
    rng = np.random.default_rng(0)
    layer, params, x = mlp.make_case(rng, sizes=(3, 4, 3))  # tanh hidden, identity output
    d = rng.standard_normal((3, 3)) if loss == "sse" else np.array([0, 2, 1])
    return layer, params, (x, d), {"fun": getattr(mlp, f"{loss}_loss"), "grad": getattr(mlp, f"{loss}_grad"),
                                   "hvp": getattr(mlp, f"{loss}_hvp")}


def _assert_blamed(res: Any, params: Params, broken: set[str], where: str) -> None:
    where = f"{where}\n{res.message()}"
    assert res.verdict == "fail" and res.kind == "check_hvp", where
    assert {leaf.name for leaf in res.failures} == broken, where
    assert all(leaf.blame == "hand" for leaf in res.failures), where
    assert all(res.leaf(name).passed for name in set(params) - broken), where


def test_check_hvp_dense_sse() -> None:
    params, args, ref = _dense_problem()
    res = gc.check_hvp(ref["fun"], ref["hvp"], params, *args, grad=ref["grad"], seed=0)
    assert res.passed and {leaf.name for leaf in res.leaves} == {"W", "b"}, res.message()
    assert any("grad= passed its own check" in n for n in res.notes)
    assert gc.check_hvp(ref["fun"], planted_dense_hvp(None), params, *args, grad=ref["grad"], seed=0).passed
    for bug in ("g'' term dropped", "factor 2"):
        res = gc.check_hvp(ref["fun"], planted_dense_hvp(bug), params, *args, grad=ref["grad"], seed=0)
        _assert_blamed(res, params, {"W", "b"}, f"dense sse: {bug}")


def test_check_hvp_mlp_sse() -> None:
    layer, params, args, ref = _mlp_problem("sse")
    assert gc.check_hvp(ref["fun"], ref["hvp"], params, *args, grad=ref["grad"], seed=0).passed
    assert gc.check_hvp(ref["fun"], planted_mlp_hvp(layer, "sse", None), params, *args, grad=ref["grad"],
                        seed=0).passed
    for bug, broken in (("f'' term dropped", {"W0", "b0"}), ("coupling delta V_Wᵀ dropped", {"W0", "b0"}),
                        ("R{a}ᵀ delta dropped", {"W1"})):
        res = gc.check_hvp(ref["fun"], planted_mlp_hvp(layer, "sse", bug), params, *args, grad=ref["grad"],
                           seed=0)
        _assert_blamed(res, params, broken, f"mlp sse: {bug}")
        if bug != "f'' term dropped":  # a cross term on one side only: H v is not symmetric
            assert any("not symmetric" in n for n in res.notes), res.notes


def test_check_hvp_mlp_xent_and_the_gauss_newton_product_passed_as_the_hessian() -> None:
    layer, params, args, ref = _mlp_problem("xent")
    assert gc.check_hvp(ref["fun"], ref["hvp"], params, *args, grad=ref["grad"], seed=0).passed
    res = gc.check_hvp(ref["fun"], ref["hvp"], params, *args, seed=0)  # no grad=: JAX's gradient
    assert res.passed and any("no grad= given" in n for n in res.notes), res.message()
    # the Gauss–Newton product is not the Hessian: the b1 row (∂y/∂b1 = I is constant) is exact
    res = gc.check_hvp(ref["fun"], mlp.xent_gnvp, params, *args, grad=ref["grad"], seed=0)
    _assert_blamed(res, params, {"W0", "b0", "W1"}, "mlp xent: Gauss–Newton as the Hessian")
    assert any("Gauss–Newton" in n and "positive semi-definite" in n for n in res.notes), res.notes
    res = gc.check_hvp(ref["fun"], planted_mlp_hvp(layer, "xent", "R{a}ᵀ delta dropped"), params, *args,
                       grad=ref["grad"], seed=0)
    _assert_blamed(res, params, {"W1"}, "mlp xent: R{a}ᵀ delta dropped")


def test_check_hvp_of_a_float32_mlp() -> None:
    rng = np.random.default_rng(3)
    _, params, x = mlp.make_case(rng, dtype=np.float32, sizes=(3, 4, 3), hidden_activation="sigmoid")
    kw = {"hidden_activation": "sigmoid"}
    t = rng.standard_normal((3, 3)).astype(np.float32)
    res = gc.check_hvp(functools.partial(mlp.sse_loss, **kw), functools.partial(mlp.sse_hvp, **kw), params, x, t,
                       grad=functools.partial(mlp.sse_grad, **kw), seed=3)
    assert res.passed, res.message()
