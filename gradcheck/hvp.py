"""Second order: ``check_hvp`` checks a hand-derived Hessian-vector product.

``fun(params, *args)`` is a scalar loss; ``hvp(params, v, *args)`` returns ``H·v`` shaped like
``params`` (Pearlmutter's R-operator, or a product derived by hand).

The check runs on the gradient engine.  For a seeded direction ``v`` (exactly representable in
the parameters' dtypes), ``H·v`` is the gradient of the scalar

    G(θ) = ⟨∇L(θ), v⟩        (the Hessian is symmetric: ∇G = H v)

so the hand ``H·v`` is checked as the gradient of ``G``: entry by entry, with error estimates,
localisation and diagnosis (a sign, a factor 2, a missing term confined to some rows).  The
gradient inside ``G`` is the user's ``grad`` when given — checked first by
:func:`gradcheck.check_grad`, so that finite differences of it can be trusted — else JAX's
gradient of ``fun`` (on JAX arrays, its ``jax_fun`` twin, or its automatic twin).  The
references are finite differences of ``G`` and JAX's derivative of ``⟨jax.grad(fun), v⟩``, which
is ``jax.jvp(jax.grad(fun))`` along ``v``.

Two properties of a Hessian are checked beside it, and said when they fail:

* symmetry: ``⟨u, H v⟩ = ⟨v, H u⟩`` for a second seeded direction ``u`` (a term differentiated
  in one order only breaks it);
* curvature: when the check fails and the hand product is positive semi-definite on a subspace
  where the Hessian is not — the Krylov space of a few Lanczos steps on the reference Hessian,
  where its negative curvature shows first (``Qᵀ H_hand Q ⪰ 0`` while ``Qᵀ H Q`` has an
  eigenvalue clearly below zero) — the hand product is a Gauss–Newton (or Fisher) product passed
  off as the Hessian: it drops the ``Σ ∂ℓ/∂y · ∂²y/∂θ²`` term of the network's curvature.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gradcheck import _hygiene as hy
from gradcheck import autodiff, check, interpret, problem, twin
from gradcheck._tree import TreeDef, flatten, path_name
from gradcheck.errors import InvalidArgument
from gradcheck.measure import probe_seed
from gradcheck.options import CheckOptions, validate
from gradcheck.result import CheckResult

__all__ = ["CURVATURE_LANCZOS", "check_hvp"]

#: Lanczos steps on the reference Hessian whose Krylov space the Gauss–Newton note compares the
#: hand product's curvature on (at most the number of parameter entries).
CURVATURE_LANCZOS = 12
SALT_V, SALT_U, SALT_W = 0x4E, 0x4F, 0x50


def _direction(values: Sequence[np.ndarray], seed: int) -> list[np.ndarray]:
    """A seeded Gaussian direction, exactly representable in each leaf's dtype."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(v.shape).astype(v.dtype).astype(np.float64) for v in values]


def _dot(a: Sequence[Any], b: Sequence[Any]) -> float:
    return float(sum(np.vdot(np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel())
                     for x, y in zip(a, b, strict=True)))


def _inner(a: Sequence[Any], b: Sequence[Any]) -> Any:
    """``Σ a·b`` without conjugation: a complex step through the user's ``grad`` survives it."""
    return sum(np.dot(np.ravel(x), np.ravel(y)) for x, y in zip(a, b, strict=True))


def _split(flat: Any, shapes: Sequence[tuple[int, ...]]) -> list[Any]:
    """A flat vector cut into leaves of ``shapes`` (numpy or JAX)."""
    out, at = [], 0
    for shape in shapes:
        n = int(np.prod(shape, dtype=np.int64))
        out.append(flat[at:at + n].reshape(shape))
        at += n
    return out


def _is_jax(values: Sequence[Any]) -> bool:
    return any(not isinstance(v, np.ndarray | np.generic | float | int) for v in values)


@dataclass(frozen=True)
class _Directional:
    """``G(θ, *args, v) = ⟨∇L(θ, *args), v⟩``, ``v`` flat and last; its gradient in ``θ`` is H·v.

    At numpy points ``∇L`` is the user's verified ``grad``, or JAX's (traced once per function
    and shapes, run with numpy).  At JAX points it is JAX's gradient of the chosen JAX form of
    ``fun`` (``kind``: ``"array-api"`` the forward on JAX arrays, ``"jax_fun"`` the user's twin,
    ``"twin"`` the automatic twin), with the data as arguments: equal instances (the same user
    code at the same shapes) share their traced programs across checks."""

    fun: Callable[..., Any]
    grad: Callable[..., Any] | None
    jax_fun: Callable[..., Any] | None
    kind: str
    treedef: TreeDef
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    def jax_loss(self, leaves: list[Any], data: Sequence[Any]) -> Any:
        import jax.numpy as jnp

        if self.kind == "twin":
            boxed = self.treedef.unflatten(twin.box_tree(list(leaves)))
            value = twin.raw_tree(twin.twin_of(self.fun)(boxed, *twin.box_tree(list(data))))
        else:
            fn = self.jax_fun if self.kind == "jax_fun" and self.jax_fun is not None else self.fun
            value = fn(self.treedef.unflatten(list(leaves)), *data)
        return jnp.real(jnp.asarray(value).reshape(()))

    def jax_grad(self, leaves: list[Any], data: Sequence[Any]) -> Any:
        import jax

        return jax.grad(self.jax_loss)(list(leaves), list(data))

    def numpy_grad(self, params: Any, args: Sequence[Any], *, complex_ok: bool = False
                   ) -> list[np.ndarray]:
        """``∇L`` at a numpy point, float64 leaf by leaf (``complex_ok``: the user's ``grad``'s
        own values, complex under a complex step, when it returns the parameters' structure)."""
        if self.grad is not None:
            raw = self.grad(params, *args)
            if complex_ok:
                got = [np.asarray(leaf.value) for leaf in flatten(raw)[0]]
                if [g.shape for g in got] == list(self.shapes) and all(
                        g.dtype.kind in "fc" for g in got):
                    return got
            hand, _ = hy.validate_hand(raw, list(self.names), list(self.shapes), what="grad")
            return [np.asarray(h, np.float64) for h in hand]
        import jax
        import jax.numpy as jnp

        leaves = [np.asarray(leaf.value) for leaf in flatten(params)[0]]
        with jax.enable_x64(True):
            point = [np.asarray(v, np.float64) for v in leaves]
            try:
                got = _traced_grad(self)(point, list(args))
            except Exception:  # a twin that branches on values: eagerly
                got = self.jax_grad([jnp.asarray(v) for v in point], autodiff.to_jax(list(args)))
            return [np.asarray(g, np.float64) for g in got]

    def __call__(self, params: Any, *args_and_v: Any) -> Any:
        *args, flat = args_and_v
        leaves = [leaf.value for leaf in flatten(params)[0]]
        v = _split(flat, self.shapes)
        if _is_jax(leaves):
            import jax.numpy as jnp

            g = self.jax_grad(list(leaves), args)
            return sum(jnp.vdot(jnp.ravel(gi), jnp.ravel(vi)) for gi, vi in zip(g, v, strict=True))
        return _inner(self.numpy_grad(params, args, complex_ok=True), v)

    def product(self, values: Sequence[np.ndarray], args: Sequence[Any],
                w: list[np.ndarray]) -> list[np.ndarray]:
        """``H w``: JAX's forward-over-reverse product when there is a JAX form of ``fun``, else a
        central difference of the gradient along ``w``."""
        if self.kind != "none":
            import jax
            import jax.numpy as jnp

            with jax.enable_x64(True):
                point = [np.asarray(v, np.float64) for v in values]
                data = list(args)
                tangent = [np.asarray(x, np.float64) for x in w]
                try:
                    hw = _traced_product(self)(point, data, tangent)
                except Exception:  # a twin that branches on values: eagerly
                    jdata = autodiff.to_jax(data)
                    _, hw = jax.jvp(lambda ls: self.jax_grad(ls, jdata),
                                    ([jnp.asarray(v) for v in point],),
                                    ([jnp.asarray(x) for x in tangent],))
                return [np.asarray(h, np.float64) for h in hw]
        base = [v.astype(np.float64) for v in values]
        scale = max(max((float(np.max(np.abs(v))) for v in base if v.size), default=0.0), 1.0)
        h = 1e-5 * scale / max(max(float(np.max(np.abs(x))) for x in w), 1e-300)

        def at(step: float) -> list[np.ndarray]:
            moved = [(v + step * x).astype(o.dtype) for v, x, o in zip(base, w, values, strict=True)]
            return self.numpy_grad(self.treedef.unflatten(moved), args)

        return [(a - b) / (2 * h) for a, b in zip(at(h), at(-h), strict=True)]

    def curvature(self, values: Sequence[np.ndarray], args: Sequence[Any], w: list[np.ndarray]) -> float:
        """``⟨w, H w⟩`` (see :meth:`product`)."""
        return _dot(w, self.product(values, args, w))


@functools.lru_cache(maxsize=32)
def _traced_grad(g: _Directional) -> Callable[..., Any]:
    """``g.jax_grad`` traced per shape and run with numpy (:func:`gradcheck.interpret.function`)."""
    return interpret.function(g.jax_grad)


@functools.lru_cache(maxsize=32)
def _traced_product(g: _Directional) -> Callable[..., Any]:
    """``(leaves, data, w) -> H w`` by JAX's forward-over-reverse, traced per shape and run with
    numpy."""
    import jax

    def product(leaves: list[Any], data: list[Any], w: list[Any]) -> Any:
        return jax.jvp(lambda ls: g.jax_grad(ls, data), (leaves,), (w,))[1]

    return interpret.function(product)


def _jax_kind(fun: Callable[..., Any], params: Any, args: tuple[Any, ...], opts: CheckOptions,
              label: str) -> autodiff.AutodiffResult:
    """Which JAX form of ``fun`` computes its loss at the given point (``grads`` is ``None``, with
    the reason in ``note``, when none does)."""
    cands, values, _ = problem.jax_losses(fun, params, args, opts)
    f0 = hy.real_loss(hy.call_user(fun, f"{label}(params, *args)", hy.copy_tree(params),
                                   *hy.copy_tree(list(args)), where="at the given point"),
                      f"{label}(params, *args)")
    low = any(v.dtype.itemsize < 8 for v in values)
    return autodiff.gradient(cands(), values, expected=f0, tol=(3e-4 if low else 1e-8) * max(1.0, abs(f0)),
                             twin=opts.jax_fun is not None)


class _Hand:
    """The hand ``H·v`` with ``v`` flat as the last argument, and ``H·d`` along any ``d``."""

    def __init__(self, hvp: Callable[..., Any], g: _Directional) -> None:
        self.hvp, self.g = hvp, g
        self.what = f"{getattr(hvp, '__name__', 'hvp')}(params, v, *args)"
        self.__name__ = getattr(hvp, "__name__", "hvp")

    def direction(self, params: Any, d: Sequence[Any]) -> Any:
        """``d`` as the pytree ``hvp`` receives: in the dtypes of the parameters it is called at
        (a float32 product gets a float32 ``v``, exact: the directions are representable)."""
        dtypes = [np.asarray(leaf.value).dtype for leaf in flatten(params)[0]]
        return self.g.treedef.unflatten([np.array(x, dtype=t if t.kind == "f" else np.float64)
                                         for x, t in zip(d, dtypes, strict=True)])

    def __call__(self, params: Any, *args_and_v: Any) -> Any:
        *args, flat = args_and_v
        return self.hvp(params, self.direction(params, _split(flat, self.g.shapes)), *args)

    def along(self, params: Any, args: Sequence[Any], d: list[np.ndarray], where: str) -> list[np.ndarray]:
        got = hy.call_user(self.hvp, self.what, hy.copy_tree(params), self.direction(params, d),
                           *hy.copy_tree(list(args)), where=where)
        hand, _ = hy.validate_hand(got, list(self.g.names), list(self.g.shapes), what=self.what)
        return [np.asarray(h, np.float64) for h in hand]


def _symmetry(hand: _Hand, params: Any, args: Sequence[Any], v: list[np.ndarray], u: list[np.ndarray],
              rtol: float) -> str | None:
    """``⟨u, H v⟩ = ⟨v, H u⟩`` for the hand product, or what is wrong with it."""
    a = _dot(u, hand.along(params, args, v, "checking the symmetry of H·v"))
    b = _dot(v, hand.along(params, args, u, "checking the symmetry of H·v"))
    if a == b or abs(a - b) <= rtol * max(abs(a), abs(b), 1e-300):
        return None
    rel = abs(a - b) / max(abs(a), abs(b))
    digits = min(17, max(6, 2 - int(np.floor(np.log10(rel))))) if rel > 0 else 17  # not "1.77 but 1.77"
    return (f"the hand H·v is not symmetric: ⟨u, H v⟩ = {a:.{digits}g} but ⟨v, H u⟩ = {b:.{digits}g} "
            f"(relative difference {rel:.2g}) for two "
            "seeded directions u, v (a Hessian is symmetric: is a cross term differentiated in one "
            "order only, or a term of one block missing from the other?)")


def _krylov(product: Callable[[list[np.ndarray]], list[np.ndarray]], start: list[np.ndarray],
            steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Lanczos with full reorthogonalisation on the reference Hessian: an orthonormal basis ``Q``
    (flat, one column per step) of the Krylov space of ``start`` and the projection ``Qᵀ H Q``.

    The extreme eigenvalues of ``Qᵀ H Q`` (Ritz values) approach the Hessian's fastest, so a few
    steps find its negative curvature where random directions may not (a Hessian whose negative
    eigenvalues are a small share of its spectrum; Golub & Van Loan, §10.1)."""
    shapes = [x.shape for x in start]
    flat = np.concatenate([x.ravel() for x in start])
    q = flat / max(float(np.linalg.norm(flat)), 1e-300)
    basis: list[np.ndarray] = []
    images: list[np.ndarray] = []
    for _ in range(min(steps, flat.size)):
        basis.append(q)
        hq = np.concatenate([h.ravel() for h in product(_split(q, shapes))])
        images.append(hq)
        w = hq.copy()
        for b in basis:  # twice is enough (Kahan's "twice is enough")
            w -= (b @ w) * b
        for b in basis:
            w -= (b @ w) * b
        norm = float(np.linalg.norm(w))
        if norm <= 1e-12 * max(float(np.linalg.norm(hq)), 1e-300):
            break  # the Krylov space is invariant: its Ritz values are eigenvalues
        q = w / norm
    Q = np.stack(basis, axis=1)
    M = Q.T @ np.stack(images, axis=1)
    return Q, 0.5 * (M + M.T)


def _curvature(hand: _Hand, params: Any, args: Sequence[Any], values: Sequence[np.ndarray],
               seed: int, low: bool) -> str | None:
    """The Gauss–Newton diagnosis: the hand product is positive semi-definite on a subspace where
    the Hessian has negative curvature.

    The subspace is the Krylov space of :data:`CURVATURE_LANCZOS` Lanczos steps on the reference
    Hessian from a seeded direction, where its most negative curvature shows first; the hand
    product's projection ``Qᵀ H_hand Q`` (symmetrised) has no eigenvalue below round-off there,
    while the Hessian's has one clearly below zero."""
    start = _direction(values, probe_seed(seed, 0, SALT_W))
    Q, ref = _krylov(lambda w: hand.g.product(values, args, w), start, CURVATURE_LANCZOS)
    shapes = [v.shape for v in values]
    cols = [np.concatenate([h.ravel() for h in hand.along(params, args, _split(Q[:, j], shapes),
                                                           "measuring the curvature of H·v")])
            for j in range(Q.shape[1])]
    mine = Q.T @ np.stack(cols, axis=1)
    mine = 0.5 * (mine + mine.T)
    ref_eig, hand_eig = np.linalg.eigvalsh(ref), np.linalg.eigvalsh(mine)
    scale = max(float(np.max(np.abs(ref_eig))), float(np.max(np.abs(hand_eig))), 1e-300)
    floor = (1e-5 if low else 1e-9) * scale
    if hand_eig[0] >= -floor and ref_eig[0] < -1e-3 * scale:
        return ("the hand product is positive semi-definite where the Hessian is not: on the "
                f"{Q.shape[1]}-dimensional Krylov space of the Hessian from a seeded direction its "
                f"least curvature is {ref_eig[0]:.3g} (most {ref_eig[-1]:.3g}), the hand product's "
                f"{hand_eig[0]:.3g} — a Gauss–Newton (or Fisher) product passed off as the Hessian? "
                "It drops the Σ ∂ℓ/∂y · ∂²y/∂θ² term; if a Gauss–Newton product is what you mean, "
                "check it against its own definition")
    return None


def check_hvp(fun: Callable[..., Any], hvp: Callable[..., Any], params: Any, *args: Any,
              grad: Callable[..., Any] | None = None, **options: Any) -> CheckResult:
    """Check a hand-derived Hessian-vector product against finite differences and JAX.

    Args:
        fun: ``fun(params, *args) -> scalar loss``.
        hvp: ``hvp(params, v, *args) -> H·v``, shaped like ``params``.
        params: a dict/list/tuple pytree of float arrays.
        *args: passed through to ``fun``, ``grad`` and ``hvp`` unchanged.
        grad: the hand gradient ``grad(params, *args)``; checked first, then differentiated by
            finite differences along the entries.  Without it, JAX's gradient of ``fun`` is.
        **options: see :class:`~gradcheck.CheckOptions`; ``jax_fun`` is a JAX twin of ``fun``.

    Returns:
        A :class:`~gradcheck.CheckResult` of kind ``check_hvp`` whose leaves are the entries of
        ``H·v`` along a seeded ``v``; notes say when the hand product is not symmetric or looks
        like a Gauss–Newton product.  When ``grad`` fails its own check, that check's result is
        returned (kind ``check_hvp``, with a note): H·v cannot be judged against it.

    Raises:
        InvalidArgument: no gradient to differentiate (no ``grad`` and no JAX path to ``fun``).

    Examples:
        >>> import numpy as np, gradcheck as gc
        >>> def f(p): return np.sum(p["w"] ** 4) / 4
        >>> def f_grad(p): return {"w": p["w"] ** 3}
        >>> def f_hvp(p, v): return {"w": 3 * p["w"] ** 2 * v["w"]}
        >>> w = np.array([0.5, -1.0, 2.0])
        >>> gc.check_hvp(f, f_hvp, {"w": w}, grad=f_grad).passed
        True
    """
    opts = validate(options)
    label = str(opts.name or getattr(hvp, "__name__", None) or getattr(fun, "__name__", "fun"))
    notes: list[str] = []
    if grad is not None:
        first = check.check_grad(fun, grad, params, *args, **{**options, "name": f"{label} (grad)"})
        if not first.passed:
            return replace(first, kind="check_hvp", name=label, notes=(
                f"the hand gradient grad= did not pass its own check ({first.verdict}), so H·v "
                "cannot be judged against finite differences of it: fix grad first (its "
                "failures are below)", *first.notes))
        notes.append(f"grad= passed its own check ({first.forward_calls} forward calls): finite "
                     "differences of it are the numeric reference of H·v")
    found = _jax_kind(fun, params, args, opts, label) if "autodiff" in opts.references or grad is None \
        else autodiff.AutodiffResult(None, "", "references=('numeric',)")
    if grad is None and found.grads is None:
        raise InvalidArgument(f"check_hvp needs a gradient of {label} to differentiate: pass grad= "
                              f"(your hand gradient, checked first), or a JAX twin with jax_fun= "
                              f"({found.note})")
    if grad is None:
        notes.append("no grad= given: finite differences of JAX's gradient of fun are the numeric "
                     "reference of H·v")
    leaves, treedef = flatten(params)
    names = tuple(path_name(leaf.path) if leaf.path else "params" for leaf in leaves)
    values = [np.asarray(leaf.value) for leaf in leaves]
    g = _Directional(fun, grad, opts.jax_fun, found.kind, treedef, names, tuple(v.shape for v in values))
    hand = _Hand(hvp, g)
    v = _direction(values, probe_seed(opts.seed, 0, SALT_V))
    u = _direction(values, probe_seed(opts.seed, 0, SALT_U))
    flat = np.concatenate([x.ravel() for x in v]) if v else np.zeros(0)
    run_opts = replace(opts, name=label, jax_twin=False, jax_fun=g if found.kind != "none" else None)
    prob = problem.grad_problem(g, hand, params, (*args, flat), run_opts)
    notes.insert(0, "second order: the hand H·v along a seeded direction v, checked as the gradient "
                 "of G(θ) = ⟨∇L(θ), v⟩ (finite differences of G; JAX's jvp of its gradient)")
    low = any(x.dtype.itemsize < 8 for x in values)
    asym = _symmetry(hand, params, args, v, u, 1e-3 if low else 1e-7)
    prob = replace(prob, kind="check_hvp", notes=(*notes, *prob.notes))
    res = check.run(prob, run_opts)
    extra = [asym] if asym else []
    if res.verdict == "fail" and any(leaf.blame == "hand" for leaf in res.leaves):
        gn = _curvature(hand, params, args, values, opts.seed, low)
        extra += [gn] if gn else []
    verdict = "fail" if asym and res.verdict == "pass" else res.verdict
    return replace(res, notes=(*res.notes, *extra), verdict=verdict,
                   jax_source=found.kind if found.kind != "none" else res.jax_source)
