"""Forward mode: the zoo's hand JVPs.

* ``Dense.jvp`` (every activation), ``MLP.jvp`` and ``ElmanRNN.jvp`` (real-time recurrent
  learning along one tangent, every activation, several T) equal ``jax.jvp`` of the forward,
  with and without an input tangent, and are the adjoints of the hand backward passes:
  ``⟨ȳ, J v⟩ = ⟨Jᵀȳ, v⟩`` with ``Jᵀȳ = backward(params, x, ȳ)``;
* the activations' ``jvp``, ``backward_jvp`` and ``second_derivative`` equal JAX's;
* through gradcheck: ``gc.check_jvp`` passes ``jvp_fun(layer, x)`` of each family and fails,
  blaming the hand JVP on exactly the leaf it breaks, on planted bugs written here
  (:func:`planted_dense_jvp`, :func:`planted_mlp_jvp`, :func:`planted_rtrl`).

JAX references are computed in float64 inside ``with jax.enable_x64(True):`` (never a global
config change), at the float32 case's point upcast exactly; a float32 hand JVP is judged with a
float32 tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck as gc
from reference import activations, dense, mlp, rnn
from reference.activations import ACTIVATIONS
from tests._profile import examples

DTYPES = (np.float64, np.float32)
#: Relative tolerance (to the largest entry of the reference) of a hand JVP against JAX's.
TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-4}
SEEDS = st.integers(0, 2**32 - 1)
EXAMPLES = 10
Params = dict[str, Any]


# Few distinct shapes: nearly all the cost of an example is JAX compiling its eager primitives for
# a shape it has not seen, so the strategies draw from small pools of shapes (and vary seeds,
# activations, dtypes, lengths freely).
BATCHES = st.sampled_from((1, 3))
DENSE_SHAPES = st.sampled_from(((3, 4), (1, 3)))  # (d_in, d_out)
MLP_SIZES = st.sampled_from(((3, 4, 2), (1, 3, 4, 2)))


def _tree(tree: Params) -> Params:
    """A tree of JAX float64 arrays (float32 values upcast exactly); inside ``enable_x64``."""
    return {k: jnp.asarray(np.asarray(v, np.float64)) for k, v in tree.items()}


def _tangents(rng: np.random.Generator, params: Params) -> Params:
    return {k: rng.standard_normal(np.shape(v)).astype(np.asarray(v).dtype) for k, v in params.items()}


def jax_jvp(forward: Callable[..., Any], params: Params, x: Any, dparams: Params, dx: Any) -> Any:
    """``jax.jvp`` of ``forward(params, x)`` along ``(dparams, dx)``, in float64."""
    with jax.enable_x64(True):
        primals = (_tree(params), jnp.asarray(np.asarray(x, np.float64)))
        tangents = (_tree(dparams), jnp.asarray(np.asarray(dx, np.float64)))
        _, out = jax.jvp(forward, primals, tangents)
        return np.asarray(out)


def assert_close(got: Any, want: Any, dtype: Any, what: str) -> None:
    tol = TOL[np.dtype(dtype)]
    scale = float(np.max(np.abs(want), initial=0.0))
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=tol,
                               atol=tol * max(scale, 1e-30), err_msg=what)


def _dot(a: Any, b: Any) -> float:
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


def assert_adjoint(layer: Any, params: Params, x: Any, dparams: Params, dx: Any, jv: Any,
                   ybar: Any, what: str) -> None:
    """``⟨ȳ, J v⟩ = ⟨Jᵀȳ, v⟩``, the hand JVP against the hand backward ``backward(params, x, ȳ)``."""
    gparams, gx = layer.backward(params, x, ybar)
    lhs = _dot(ybar, jv)
    terms = [_dot(gparams[k], dparams[k]) for k in params] + [_dot(gx, dx)]
    scale = float(np.sum(np.abs(np.asarray(ybar, np.float64) * np.asarray(jv, np.float64))))
    scale += sum(abs(t) for t in terms)
    assert abs(lhs - sum(terms)) <= 10 * TOL[np.dtype(x.dtype)] * max(scale, 1e-30), (
        f"{what}: <ybar, J v> = {lhs!r} but <J^T ybar, v> = {sum(terms)!r}"
    )


def check_layer_jvp(layer: Any, params: Params, x: Any, seed: int, what: str) -> None:
    """The hand JVP equals JAX's, with and without an input tangent, and is the adjoint of the
    hand backward."""
    rng = np.random.default_rng(seed + 1)
    dparams, dx = _tangents(rng, params), rng.standard_normal(x.shape).astype(x.dtype)
    jv = layer.jvp(params, x, dparams, dx)
    y = layer.forward(params, x)
    assert jv.shape == y.shape and jv.dtype == y.dtype, what
    assert_close(jv, jax_jvp(layer.forward, params, x, dparams, dx), x.dtype, what)
    no_dx = layer.jvp(params, x, dparams, None)
    assert_close(no_dx, jax_jvp(layer.forward, params, x, dparams, np.zeros_like(x)), x.dtype,
                 f"{what} (dx=None)")
    ybar = rng.standard_normal(y.shape).astype(x.dtype)
    assert_adjoint(layer, params, x, dparams, dx, jv, ybar, what)


# ------------------------------------------------------------------------------- Dense


@settings(max_examples=examples(EXAMPLES))
@given(seed=SEEDS, dtype=st.sampled_from(DTYPES), activation=st.sampled_from(sorted(ACTIVATIONS)),
       batch=BATCHES, shape=DENSE_SHAPES)
def test_dense_jvp(seed: int, dtype: Any, activation: str, batch: int, shape: tuple[int, int]) -> None:
    d_in, d_out = shape
    layer, params, x = dense.make_case(np.random.default_rng(seed), dtype=dtype, batch=batch,
                                       d_in=d_in, d_out=d_out, activation=activation)
    check_layer_jvp(layer, params, x, seed, f"Dense({activation!r}) {np.dtype(dtype).name} seed={seed}")


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_dense_jvp_every_activation(activation: str) -> None:
    for dtype in DTYPES:
        layer, params, x = dense.make_case(np.random.default_rng(0), dtype=dtype, activation=activation)
        check_layer_jvp(layer, params, x, 0, f"Dense({activation!r}) {np.dtype(dtype).name}")


# --------------------------------------------------------------------------------- MLP
_HIDDEN = st.sampled_from(("tanh", "sigmoid", "relu", "leaky_relu", "identity", "softmax"))
_OUTPUT = st.sampled_from(("identity", "sigmoid", "tanh", "softmax"))


@st.composite
def mlp_cases(draw: st.DrawFn) -> tuple[Any, Params, Any, int, str]:
    sizes = draw(MLP_SIZES)
    hidden = tuple(draw(_HIDDEN) for _ in range(len(sizes) - 2))
    output = draw(_OUTPUT)
    seed, dtype = draw(SEEDS), draw(st.sampled_from(DTYPES))
    layer, params, x = mlp.make_case(np.random.default_rng(seed), dtype=dtype, batch=draw(BATCHES),
                                     sizes=sizes, hidden_activation=hidden, output_activation=output)
    return layer, params, x, seed, f"MLP{sizes} {hidden}->{output} {np.dtype(dtype).name} seed={seed}"


@settings(max_examples=examples(EXAMPLES))
@given(case=mlp_cases())
def test_mlp_jvp(case: tuple[Any, Params, Any, int, str]) -> None:
    layer, params, x, seed, what = case
    check_layer_jvp(layer, params, x, seed, what)


def test_mlp_jvp_with_tangents_returns_every_layer() -> None:
    layer, params, x = mlp.make_case(np.random.default_rng(3), sizes=(3, 4, 2))
    dparams = _tangents(np.random.default_rng(4), params)
    a, net, da, dnet = layer.jvp_with_tangents(params, x, dparams)
    assert [v.shape for v in da] == [v.shape for v in a]
    assert [v.shape for v in dnet] == [v.shape for v in net]
    assert not da[0].any()  # dx = None: the input does not move
    np.testing.assert_array_equal(da[-1], layer.jvp(params, x, dparams))


# --------------------------------------------------------------------------- Elman RNN


@settings(max_examples=examples(EXAMPLES))
@given(seed=SEEDS, dtype=st.sampled_from(DTYPES), activation=st.sampled_from(("tanh", "sigmoid", "relu")),
       T=st.integers(1, 6), B=BATCHES, DHK=st.sampled_from(((3, 5, 2), (1, 3, 1))))
def test_rnn_jvp_is_rtrl(seed: int, dtype: Any, activation: Any, T: int, B: int,
                         DHK: tuple[int, int, int]) -> None:
    D, H, K = DHK
    layer, params, x = rnn.make_case(np.random.default_rng(seed), dtype=dtype, T=T, B=B, D=D, H=H,
                                     K=K, activation=activation)
    check_layer_jvp(layer, params, x, seed,
                    f"ElmanRNN({activation!r}) T={T} {np.dtype(dtype).name} seed={seed}")


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("T", [1, 2, 5])
def test_rnn_jvp_every_activation_and_length(activation: Any, T: int) -> None:
    for dtype in DTYPES:
        layer, params, x = rnn.make_case(np.random.default_rng(T), dtype=dtype, T=T, activation=activation)
        check_layer_jvp(layer, params, x, T, f"ElmanRNN({activation!r}) T={T} {np.dtype(dtype).name}")


def test_rtrl_state_tangents_and_truncation() -> None:
    """``rtrl`` also returns ṡ_t (the JVP of the states); the truncation never touches it."""
    layer, params, x = rnn.make_case(np.random.default_rng(5), T=5)
    rng = np.random.default_rng(6)
    dparams, dx = _tangents(rng, params), rng.standard_normal(x.shape)
    dy, ds = layer.rtrl(params, x, dparams, dx)
    assert ds.shape == (5, x.shape[1], params["U"].shape[0])

    def _unroll(p: Params, xx: Any) -> Any:
        s, out = layer.initial_state(p, xx.shape[1]), []
        for t in range(xx.shape[0]):
            s = layer.state_step(p, s, xx[t])
            out.append(s)
        return jnp.stack(out)

    with jax.enable_x64(True):
        _, want = jax.jvp(_unroll, (_tree(params), jnp.asarray(x)), (_tree(dparams), jnp.asarray(dx)))
    assert_close(ds, np.asarray(want), np.float64, "state tangents")
    for tau in (1, 3):
        np.testing.assert_array_equal(layer.with_truncation(tau).jvp(params, x, dparams, dx), dy)


# ------------------------------------------------------------------ tangent validation

_CASES: dict[str, Callable[[], tuple[Any, Params, Any]]] = {
    "dense": lambda: dense.make_case(np.random.default_rng(0)),
    "mlp": lambda: mlp.make_case(np.random.default_rng(0)),
    "rnn": lambda: rnn.make_case(np.random.default_rng(0), T=2),
}


@pytest.mark.parametrize("family", list(_CASES))
def test_tangent_trees_must_be_complete(family: str) -> None:
    layer, params, x = _CASES[family]()
    good = _tangents(np.random.default_rng(1), params)
    key = next(iter(params))
    missing = {k: v for k, v in good.items() if k != key}
    with pytest.raises(ValueError, match=rf"missing or None \['{key}'\]"):
        layer.jvp(params, x, missing)
    with pytest.raises(ValueError, match="missing or None"):
        layer.jvp(params, x, {**good, key: None})
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        layer.jvp(params, x, {**good, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=rf"dparams\['{key}'\] has shape"):
        layer.jvp(params, x, {**good, key: np.zeros((*np.shape(params[key]), 1))})
    with pytest.raises(ValueError, match="dx has shape"):
        layer.jvp(params, x, good, np.zeros((*x.shape, 1)))
    with pytest.raises(ValueError, match="must be a dict"):
        layer.jvp(params, x, list(good.values()))


@pytest.mark.parametrize("module", [dense, mlp, rnn], ids=lambda m: m.__name__)
def test_jvp_fun_is_the_layer_at_a_fixed_input(module: Any) -> None:
    layer, params, x = _CASES[module.__name__.rsplit(".", 1)[1]]()
    t = _tangents(np.random.default_rng(2), params)
    fun, jvp = module.jvp_fun(layer, x)
    assert "jvp_fun" in module.__all__
    assert fun.__name__ == f"{type(layer).__name__}.forward" and jvp.__name__ == f"{type(layer).__name__}.jvp"
    np.testing.assert_array_equal(fun(params), layer.forward(params, x))
    np.testing.assert_array_equal(jvp(params, t), layer.jvp(params, x, t))


def test_activation_layer_jvp() -> None:
    for name in sorted(ACTIVATIONS):
        layer, _, x = activations.make_case(np.random.default_rng(0), activation=name)
        dx = np.random.default_rng(1).standard_normal(x.shape)
        with jax.enable_x64(True):
            _, want = jax.jvp(lambda xx, lay=layer: lay.forward({}, xx), (jnp.asarray(x),), (jnp.asarray(dx),))
        assert_close(layer.jvp({}, x, {}, dx), np.asarray(want), np.float64, name)
        assert not layer.jvp({}, x, {}, None).any()


# ------------------------------------------------------- activation second-order helpers


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_jvp_and_backward_jvp_equal_jax(name: str) -> None:
    """``jvp`` is g's JVP; ``backward_jvp`` is the JVP of the VJP ``(net, dy) -> backward``;
    ``second_derivative`` is g'' (the softmax has none: NotImplementedError, saying why)."""
    act = ACTIVATIONS[name]
    rng = np.random.default_rng(7)
    net = rng.uniform(0.2, 1.5, (3, 4)) * rng.choice([-1.0, 1.0], (3, 4))
    dnet, dy, ddy = (rng.standard_normal((3, 4)) for _ in range(3))
    y = act.forward(net)

    def vjp(n: Any, d: Any) -> Any:
        return jax.vjp(act.forward, n)[1](d)[0]

    with jax.enable_x64(True):
        _, want_jvp = jax.jvp(act.forward, (jnp.asarray(net),), (jnp.asarray(dnet),))
        _, want_r = jax.jvp(vjp, (jnp.asarray(net), jnp.asarray(dy)), (jnp.asarray(dnet), jnp.asarray(ddy)))
    assert_close(act.jvp(net, y, dnet), np.asarray(want_jvp), np.float64, f"{name}.jvp")
    assert_close(act.backward_jvp(net, y, dy, dnet, ddy), np.asarray(want_r), np.float64,
                 f"{name}.backward_jvp")
    if act.elementwise:
        with jax.enable_x64(True):
            gp = jax.grad(lambda n: jnp.sum(act.forward(n)))
            _, want_g2 = jax.jvp(gp, (jnp.asarray(net),), (jnp.ones_like(jnp.asarray(net)),))
        assert_close(act.second_derivative(net, y), np.asarray(want_g2), np.float64, f"{name} g''")
    else:
        with pytest.raises(NotImplementedError, match=r"not elementwise.*3-tensor"):
            act.second_derivative(net, y)


def test_second_derivative_formulas() -> None:
    y = np.array([-0.5, 0.1, 0.9])
    np.testing.assert_allclose(ACTIVATIONS["sigmoid"].second_derivative(y, y), y * (1 - y) * (1 - 2 * y))
    np.testing.assert_allclose(ACTIVATIONS["tanh"].second_derivative(y, y), -2 * y * (1 - y * y))
    for name in ("identity", "relu", "leaky_relu"):
        assert not ACTIVATIONS[name].second_derivative(y, y).any()


def test_a_user_activation_without_second_derivative_says_so() -> None:
    class Cube(activations.Activation):
        def forward(self, x: Any) -> Any:
            return x**3

        def derivative(self, x: Any, y: Any) -> Any:
            return 3 * x**2

    x = np.ones((2, 2))
    np.testing.assert_array_equal(Cube().jvp(x, x, x), 3 * x)  # the JVP needs only g'
    with pytest.raises(NotImplementedError, match="Cube defines no second_derivative"):
        Cube().backward_jvp(x, x, x, x, x)


# ------------------------------------------------------- through gradcheck: planted bugs


def planted_dense_jvp(layer: Any, x: Any, bug: str | None) -> Callable[[Params, Params], Any]:
    """A tanh Dense JVP ``(params, t) -> ẏ`` written out by hand, with one planted ``bug``:

    * ``"sign of x Ẇ"``: ``ṅet = -x Ẇ + ḃ`` — breaks leaf ``W``;
    * ``"ḃ dropped"``: ``ṅet = x Ẇ`` — breaks leaf ``b``;
    * ``None``: the correct ``ẏ = (1 - y²) ⊙ (x Ẇ + ḃ)``.
    """

    def jvp(params: Params, t: Params) -> Any:
        _, y = layer.forward_cache(params, x)
        dnet = (-1.0 if bug == "sign of x Ẇ" else 1.0) * (x @ t["W"])
        if bug != "ḃ dropped":
            dnet = dnet + t["b"]
        return (1 - y * y) * dnet

    return jvp


def planted_mlp_jvp(layer: Any, x: Any, bug: str | None) -> Callable[[Params, Params], Any]:
    """An MLP JVP with one planted ``bug``:

    * ``"carry ȧ_i W_i dropped"``: ``ṅet_i = a_i Ẇ_i + ḃ_i`` — the tangent of the layer below is
      not carried up: breaks the leaves below the last layer (``W0``, ``b0`` for two layers);
    * ``"last ḃ dropped"``: the output layer's bias tangent is forgotten — breaks ``b{L-1}``;
    * ``None``: the correct recursion of reference/mlp.py.
    """

    def jvp(params: Params, t: Params) -> Any:
        a, net = layer.forward_cache(params, x)
        fs = layer.activations(len(net))
        da = np.zeros_like(a[0])
        for i, f in enumerate(fs):
            dnet = a[i] @ t[f"W{i}"]
            if bug != "carry ȧ_i W_i dropped":
                dnet = dnet + da @ params[f"W{i}"]
            if not (bug == "last ḃ dropped" and i == len(fs) - 1):
                dnet = dnet + t[f"b{i}"]
            da = f.jvp(net[i], a[i + 1], dnet)
        return da

    return jvp


def planted_rtrl(layer: Any, x: Any, bug: str | None) -> Callable[[Params, Params], Any]:
    """RTRL for a tanh Elman RNN (reference/rnn.py's forward-mode equations) with one planted
    ``bug``:

    * ``"s_t for s_{t-1}"``: ``ȧ_t = … + s_t U̇ + …`` — the state after the step where the one
      before it belongs: breaks leaf ``U``;
    * ``"recurrent carry dropped"``: ``ȧ_t`` without ``ṡ_{t-1} U`` — each step's sensitivity
      starts from zero: breaks ``V``, ``U``, ``b`` (T ≥ 2) and ``h0``; ``W``, ``c`` stay exact;
    * ``None``: the correct ``ṡ_t = (1 - s_t²) ⊙ (x_t V̇ + ṡ_{t-1} U + s_{t-1} U̇ + ḃ)``,
      ``ẏ_t = ṡ_t W + s_t Ẇ + ċ``.
    """

    def jvp(params: Params, t: Params) -> Any:
        S = layer.states(params, x)  # S[k] = s_{k-1}
        ds = np.broadcast_to(t["h0"], S[0].shape)
        out = []
        for k in range(x.shape[0]):
            s_prev = S[k + 1] if bug == "s_t for s_{t-1}" else S[k]
            da = x[k] @ t["V"] + s_prev @ t["U"] + t["b"]
            if bug != "recurrent carry dropped":
                da = da + ds @ params["U"]
            ds = (1 - S[k + 1] ** 2) * da
            out.append(ds @ params["W"] + S[k + 1] @ t["W"] + t["c"])
        return np.stack(out)

    return jvp


_JVP_FAMILIES: dict[str, tuple[Callable[[], tuple[Any, Params, Any]], Any, Any, dict[str, set[str]]]] = {
    # family: (case, module, planted, {bug: the leaves it breaks})
    "dense": (lambda: dense.make_case(np.random.default_rng(0), activation="tanh"), dense, planted_dense_jvp,
              {"sign of x Ẇ": {"W"}, "ḃ dropped": {"b"}}),
    "mlp": (lambda: mlp.make_case(np.random.default_rng(0), sizes=(3, 4, 2)), mlp, planted_mlp_jvp,
            {"carry ȧ_i W_i dropped": {"W0", "b0"}, "last ḃ dropped": {"b1"}}),
    "rnn": (lambda: rnn.make_case(np.random.default_rng(0), T=4), rnn, planted_rtrl,
            {"s_t for s_{t-1}": {"U"}, "recurrent carry dropped": {"V", "U", "b", "h0"}}),
}


@pytest.mark.parametrize("family", sorted(_JVP_FAMILIES))
def test_check_jvp_passes_the_references_and_blames_planted_bugs(family: str) -> None:
    make, module, planted, bugs = _JVP_FAMILIES[family]
    layer, params, x = make()
    fun, jvp = module.jvp_fun(layer, x)
    res = gc.check_jvp(fun, jvp, params, seed=0)
    assert res.passed and res.kind == "check_jvp", res.message()
    assert {leaf.name for leaf in res.leaves} == set(params)
    assert gc.check_jvp(fun, planted(layer, x, None), params, seed=0).passed  # the control
    for bug, broken in bugs.items():
        res = gc.check_jvp(fun, planted(layer, x, bug), params, seed=0)
        where = f"{family}: {bug}\n{res.message()}"
        assert res.verdict == "fail", where
        assert {leaf.name for leaf in res.failures} == broken, where
        assert all(leaf.blame == "hand" for leaf in res.failures), where
        assert all(res.leaf(name).passed for name in set(params) - broken), where


def test_check_jvp_of_a_float32_rnn() -> None:
    layer, params, x = rnn.make_case(np.random.default_rng(1), dtype=np.float32, T=3, activation="sigmoid")
    fun, jvp = rnn.jvp_fun(layer, x)
    res = gc.check_jvp(fun, jvp, params, seed=1)
    assert res.passed, res.message()
