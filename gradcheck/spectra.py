"""Singular spectra of linear maps from matrix-vector products: Golub–Kahan–Lanczos bidiagonalisation.

A Jacobian ``J = ∂f/∂x`` (m × n) need not be formed to know its singular values: a JVP gives
``J v`` and a VJP ``Jᵀ u``, and the bidiagonalisation of Golub & Kahan (1965) builds from those
products alone orthonormal bases ``U_k`` (m × k), ``V_k`` (n × k) and an upper-bidiagonal
``B_k`` (k × k) with ``J V_k = U_k B_k``::

    v_1 = r / ‖r‖                  r ~ N(0, I_n), from ``seed``;  β_0 u_0 = 0
    α_j u_j     = J v_j  − β_{j−1} u_{j−1}        u_j ⟂ u_1 … u_{j−1} again (full reorthogonalisation)
    β_j v_{j+1} = Jᵀ u_j − α_j v_j                v_{j+1} ⟂ v_1 … v_j again
    B_k = bidiag(α_1 … α_k; β_1 … β_{k−1}),       Jᵀ U_k = V_k B_kᵀ + β_k v_{k+1} e_kᵀ

The singular values θ_i of ``B_k`` (Ritz values) interlace ``J``'s from below (``θ_i ≤ σ_i``:
``B_k = U_kᵀ J V_k``); the largest converge first.  A Ritz triple ``B_k = X Θ Yᵀ`` gives
``J (V_k y_i) = θ_i U_k x_i`` exactly and ``‖Jᵀ U_k x_i − θ_i V_k y_i‖ = β_k |x_i[k]|``, the
residual reported.  After ``q = min(m, n)`` steps (the map is transposed first when m < n, so that
``n ≤ m`` and ``V_q`` spans ℝⁿ) ``J = U_q B_q V_qᵀ``: the spectrum is complete and exact up to
round-off, which full reorthogonalisation keeps at ``O(q·ε·‖J‖)``.  A breakdown (``α_j`` or
``β_j`` below ``BREAKDOWN·‖J‖``: an invariant subspace, e.g. a rank-deficient ``J``) restarts the
basis with a fresh seeded vector orthogonal to the previous ones and a zero in ``B_k``, so rank
deficiency costs nothing and zero singular values are found as zeros.

Moments, over the ``q`` singular values (zeros included): ``mean_sq = (1/q) Σ σ_i² = ‖J‖_F²/q``
and ``var_sq = (1/q) Σ (σ_i² − mean_sq)²``.  They are exact when the spectrum is complete
(``exact``); otherwise Hutchinson's estimator with Rademacher probes ``z`` gives them:
``E‖J z‖² = tr(JᵀJ)`` and ``E‖JᵀJ z‖² = tr((JᵀJ)²)``.  A network whose input-output Jacobian has
``mean_sq ≈ 1`` and ``var_sq ≈ 0`` is *dynamically isometric* (Pennington, Schoenholz & Ganguli
2017): every direction is carried with the same gain, neither vanishing nor exploding; the
spread ``σ_max/σ_min`` is the condition number of that carriage.

Batches: a :class:`LinearMap` may stand for ``batch`` independent blocks at once (one Jacobian
per batch row, as ``∂h_t/∂h_{t−1}`` of a recurrent cell): its products take and return
``(batch, n)`` / ``(batch, m)`` arrays, each row its own block.  The bidiagonalisations of the
rows run in lockstep (one product serves every row) and the :class:`Spectrum` is that of the
block-diagonal map: the union of the rows' spectra (``top[0]`` is the largest σ over the batch,
``bottom[0]`` the smallest).

``method="dense"`` builds the matrix from ``n`` products (columns ``J e_i``) and calls
``np.linalg.svd``; ``"lanczos"`` is the matrix-free path above; ``"auto"`` takes ``"dense"`` for a
block of at most :data:`AUTO_DENSE_ENTRIES` entries and ``"lanczos"`` beyond.

References:
    G. Golub, W. Kahan, "Calculating the singular values and pseudo-inverse of a matrix",
    J. SIAM Numer. Anal. B 2(2), 1965.
    R. M. Larsen, "Lanczos bidiagonalization with partial reorthogonalization", DAIMI PB-357,
    1998 (the residual bound; full reorthogonalisation is used here).
    M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix", Commun.
    Stat. Simul. Comput. 18(3), 1989.
    J. Pennington, S. Schoenholz, S. Ganguli, "Resurrecting the sigmoid in deep learning through
    dynamical isometry: theory and practice", NeurIPS 2017.

Examples:
    >>> import numpy as np
    >>> a = np.diag([3.0, 2.0, 1.0, 0.0]) @ np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))[0]
    >>> s = spectrum(linear_map(lambda v: a @ v, lambda u: a.T @ u, a.shape), k=2, method="lanczos")
    >>> np.round(s.top, 12).tolist(), np.round(s.bottom, 12).tolist(), s.spread > 1e12, s.exact
    ([3.0, 2.0], [0.0, 1.0], True, True)
    >>> round(s.mean_sq, 12), s.method, s.n_products
    (3.5, 'lanczos', 8)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from gradcheck.errors import InvalidArgument
from gradcheck.result import json_number

__all__ = [
    "AUTO_DENSE_ENTRIES",
    "BREAKDOWN",
    "DEFAULT_STEPS",
    "LinearMap",
    "Method",
    "Spectrum",
    "dense_spectrum",
    "jax_linear_map",
    "linear_map",
    "spectrum",
]

#: ``method="auto"`` builds the dense block (``n`` products) when it has at most this many entries.
AUTO_DENSE_ENTRIES = 256
#: Bidiagonalisation steps when ``max_steps`` is not given (the spectrum is exact when q ≤ this).
DEFAULT_STEPS = 64
#: ``α_j`` or ``β_j`` at most this fraction of the largest seen is a breakdown (invariant subspace).
BREAKDOWN = 1e-12

Method = Literal["auto", "dense", "lanczos"]
F64 = npt.NDArray[np.float64]
VecFn = Callable[[F64], Any]


@dataclass(frozen=True, slots=True)
class LinearMap:
    """A linear map ``ℝⁿ → ℝᵐ`` (``batch`` independent blocks of it) given by its products.

    Attributes:
        shape: ``(m, n)`` of one block.
        matvec: ``V (batch, n) -> J V (batch, m)``: row ``b`` is block ``b`` times ``V[b]`` (a JVP).
        rmatvec: ``U (batch, m) -> Jᵀ U (batch, n)`` (a VJP).
        batch: how many blocks (1 for one matrix).
        matmat: optionally, many products at once, ``V (k, batch, n) -> (k, batch, m)``; the dense
            path uses it to build the blocks in one call.
    """

    shape: tuple[int, int]
    matvec: VecFn
    rmatvec: VecFn
    batch: int = 1
    matmat: VecFn | None = None

    @property
    def T(self) -> LinearMap:
        """The transposed map (the same blocks, transposed)."""
        return LinearMap((self.shape[1], self.shape[0]), self.rmatvec, self.matvec, self.batch)


@dataclass(frozen=True, slots=True, eq=False)
class Spectrum:
    """Extreme singular values and moments of a linear map (the union over its blocks).

    Attributes:
        top: the ``k`` largest singular values, descending.
        bottom: the ``k`` smallest of the ``q = min(m, n)`` per block (zeros included), ascending.
        spread: ``σ_max / σ_min`` (inf when σ_min = 0 < σ_max, NaN for the zero map).
        mean_sq: ``(1/q) Σ σ_i²``, over every block's ``q`` singular values.
        var_sq: ``(1/q) Σ (σ_i² − mean_sq)²``.
        method: ``"dense"`` (``np.linalg.svd``) or ``"lanczos"`` (Golub–Kahan, matrix-free).
        n_products: applications of the map or its transpose (one serves every block).
        shape: ``(m, n)`` of one block.
        batch: the number of blocks.
        steps: bidiagonalisation steps (0 for ``"dense"``).
        exact: every singular value was found (dense, or a complete bidiagonalisation); when not,
            ``bottom`` are Ritz estimates and the moments are Hutchinson estimates.
        residual: the largest Ritz residual of the reported values over ``σ_max`` (0 when exact
            to round-off or dense).
    """

    top: F64
    bottom: F64
    spread: float
    mean_sq: float
    var_sq: float
    method: str
    n_products: int
    shape: tuple[int, int]
    batch: int = 1
    steps: int = 0
    exact: bool = True
    residual: float = 0.0

    @property
    def sigma_max(self) -> float:
        return float(self.top[0]) if self.top.size else math.nan

    @property
    def sigma_min(self) -> float:
        return float(self.bottom[0]) if self.bottom.size else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON (non-finite numbers as strings)."""
        return {
            "top": [json_number(v) for v in self.top],
            "bottom": [json_number(v) for v in self.bottom],
            "spread": json_number(self.spread),
            "mean_sq": json_number(self.mean_sq),
            "var_sq": json_number(self.var_sq),
            "method": self.method,
            "n_products": self.n_products,
            "shape": list(self.shape),
            "batch": self.batch,
            "steps": self.steps,
            "exact": self.exact,
            "residual": json_number(self.residual),
        }


# ----------------------------------------------------------------------------- building maps


def linear_map(matvec: VecFn, rmatvec: VecFn, shape: tuple[int, int]) -> LinearMap:
    """A :class:`LinearMap` (one block) from closures over flat vectors ``(n,) -> (m,)`` and back.

    Examples:
        >>> a = np.arange(6.0).reshape(2, 3)
        >>> op = linear_map(lambda v: a @ v, lambda u: a.T @ u, a.shape)
        >>> op.matvec(np.ones((1, 3))).tolist(), op.shape, op.batch
        ([[3.0, 12.0]], (2, 3), 1)
    """
    m, n = _shape(shape)

    def mv(v: F64) -> F64:
        return np.asarray(matvec(np.asarray(v[0])), dtype=np.float64).reshape(1, m)

    def rmv(u: F64) -> F64:
        return np.asarray(rmatvec(np.asarray(u[0])), dtype=np.float64).reshape(1, n)

    return LinearMap((m, n), mv, rmv, 1)


def jax_linear_map(fun: Callable[[Any], Any], x0: Any, *, batched: bool = False) -> LinearMap:
    """The Jacobian of a JAX-traceable ``fun`` at ``x0`` as a :class:`LinearMap`, in float64.

    ``jax.jvp`` gives the products and ``jax.vjp`` the transposed ones, each traced on its first use
    under ``jax.enable_x64(True)`` and run with numpy (:mod:`gradcheck.interpret`: nothing is
    compiled; the caller's JAX configuration is never changed); ``matmat`` maps the JVP over many
    vectors in one call (``jax.vmap``), which is what the dense path of a small block needs.

    Args:
        fun: ``x -> y`` written with JAX-traceable (array-API) code.
        x0: the point, any shape; with ``batched`` its leading axis is the batch.
        batched: ``fun`` treats the rows of ``x`` independently (row ``b`` of ``y`` depends on row
            ``b`` of ``x`` only), and the map is the batch of the rows' Jacobians.

    Returns:
        A :class:`LinearMap` with ``batch = x0.shape[0]`` (batched) or 1.

    Examples:
        >>> import jax.numpy as jnp
        >>> op = jax_linear_map(lambda x: jnp.tanh(2.0 * x), np.zeros((3, 2)), batched=True)
        >>> op.shape, op.batch, op.matvec(np.ones((3, 2))).tolist()[0]
        ((2, 2), 3, [2.0, 2.0])
    """
    import jax

    from gradcheck import interpret

    x = np.asarray(x0, dtype=np.float64)
    with jax.enable_x64(True):
        y = jax.eval_shape(fun, x)
    def _jvp(xx: Any, u: Any) -> Any:
        return jax.jvp(fun, (xx,), (u,))[1]

    def _vjp(xx: Any, w: Any) -> Any:
        return jax.vjp(fun, xx)[1](w)[0]

    # Traced once per product kind and shape with the point as an argument (a constant point
    # would run the forward eagerly inside the trace), then run with numpy.
    products = {"jvp": interpret.function(_jvp), "vjp": interpret.function(_vjp),
                "many": interpret.function(lambda xx, us: jax.vmap(lambda u: _jvp(xx, u))(us))}

    def _run(name: str, v: F64) -> F64:
        with jax.enable_x64(True):
            return np.asarray(products[name](x, v), dtype=np.float64)

    rows = int(x.shape[0]) if batched else 1
    if batched and (x.ndim == 0 or len(y.shape) == 0 or y.shape[0] != rows):
        raise InvalidArgument(f"jax_linear_map(batched=True): x {x.shape} -> y {y.shape} keeps no batch "
                              "axis; pass batched=False for one block.")
    n, m = x.size // max(rows, 1), math.prod(y.shape) // max(rows, 1)
    x_shape, y_shape = tuple(x.shape), tuple(y.shape)

    def matvec(v: F64) -> F64:
        return _run("jvp", np.reshape(np.asarray(v, dtype=np.float64), x_shape)).reshape(rows, m)

    def rmatvec(u: F64) -> F64:
        return _run("vjp", np.reshape(np.asarray(u, dtype=np.float64), y_shape)).reshape(rows, n)

    def matmat(V: F64) -> F64:
        k = np.shape(V)[0]
        many = np.reshape(np.asarray(V, dtype=np.float64), (k, *x_shape))
        return _run("many", many).reshape(k, rows, m)

    return LinearMap((int(m), int(n)), matvec, rmatvec, rows, matmat)


def _shape(shape: Any) -> tuple[int, int]:
    try:
        m, n = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise InvalidArgument(f"shape={shape!r}: expected (m, n), two non-negative ints.") from None
    if m < 0 or n < 0:
        raise InvalidArgument(f"shape={shape!r}: expected (m, n), two non-negative ints.")
    return m, n


# ----------------------------------------------------------------------------- spectra


def dense_spectrum(a: Any, *, k: int = 6, n_products: int = 0) -> Spectrum:
    """The spectrum of an explicit matrix (m, n), or of a batch of blocks (B, m, n), by SVD.

    Args:
        a: the matrix or the blocks.
        k: how many of the largest and of the smallest singular values to keep.
        n_products: recorded as is (the products spent building ``a``, if any).

    Examples:
        >>> s = dense_spectrum(np.stack([np.diag([4.0, 1.0]), np.diag([2.0, 0.5])]), k=1)
        >>> s.top.tolist(), s.bottom.tolist(), s.spread, s.mean_sq
        ([4.0], [0.5], 8.0, 5.3125)
    """
    blocks = np.asarray(a, dtype=np.float64)
    if blocks.ndim == 2:
        blocks = blocks[None]
    if blocks.ndim != 3:
        raise InvalidArgument(f"dense_spectrum: a has shape {np.shape(a)}; expected (m, n) or (B, m, n).")
    B, m, n = blocks.shape
    sigma = np.linalg.svd(blocks, compute_uv=False) if min(m, n) else np.zeros((B, 0))
    flat = np.asarray(sigma, dtype=np.float64).ravel()
    return _summary(flat, k=k, method="dense", n_products=n_products, shape=(m, n), batch=B)


def spectrum(
    op: LinearMap,
    *,
    k: int = 6,
    method: Method = "auto",
    seed: int = 0,
    max_steps: int | None = None,
    probes: int = 16,
) -> Spectrum:
    """The ``k`` largest and smallest singular values and the moments of ``op``.

    Args:
        op: the map (see :class:`LinearMap`; :func:`linear_map` and :func:`jax_linear_map` build one).
        k: how many of the largest and of the smallest singular values to report.
        method: ``"auto"``, ``"dense"`` or ``"lanczos"`` (see the module docstring).
        seed: seeds the start vector, restarts and Hutchinson probes (deterministic).
        max_steps: bidiagonalisation steps (default ``min(q, DEFAULT_STEPS)``, q = min(m, n)).
        probes: Hutchinson probes for the moments when the bidiagonalisation stops early.

    Returns:
        A :class:`Spectrum`.

    Raises:
        InvalidArgument: a bad ``k``, ``method``, ``max_steps`` or ``probes``.
    """
    m, n = _shape(op.shape)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidArgument(f"k={k!r}: expected an int >= 1.")
    if method not in ("auto", "dense", "lanczos"):
        raise InvalidArgument(f"method={method!r}: expected 'auto', 'dense' or 'lanczos'.")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int)
                                  or max_steps < 1):
        raise InvalidArgument(f"max_steps={max_steps!r}: expected None or an int >= 1.")
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise InvalidArgument(f"probes={probes!r}: expected an int >= 1.")
    if min(m, n) == 0:
        return _summary(np.zeros(0), k=k, method="dense", n_products=0, shape=(m, n), batch=op.batch)
    if method == "dense" or (method == "auto" and m * n <= AUTO_DENSE_ENTRIES):
        return _dense_from_products(op, k)
    return _lanczos(op, k=k, seed=seed, max_steps=max_steps, probes=probes)


def _dense_from_products(op: LinearMap, k: int) -> Spectrum:
    """Columns ``J e_i`` of every block by ``n`` products (one ``matmat`` when there is), then the SVD."""
    m, n = op.shape
    basis = np.broadcast_to(np.eye(n)[:, None, :], (n, op.batch, n))
    if op.matmat is not None:
        cols = np.asarray(op.matmat(np.ascontiguousarray(basis)), dtype=np.float64).reshape(n, op.batch, m)
    else:
        cols = np.stack([np.asarray(op.matvec(basis[i]), dtype=np.float64).reshape(op.batch, m)
                         for i in range(n)])
    return dense_spectrum(np.moveaxis(cols, 0, -1), k=k, n_products=n)  # (B, m, n)


@dataclass(frozen=True, slots=True)
class _Bidiagonal:
    """What ``steps`` Golub–Kahan steps leave, per block (``n ≤ m`` orientation)."""

    alpha: F64  # (B, k)
    beta: F64  # (B, k): β_k is the last column
    products: int
    steps: int


def _lanczos(op: LinearMap, *, k: int, seed: int, max_steps: int | None, probes: int) -> Spectrum:
    """The matrix-free path: bidiagonalise, take the Ritz values, estimate what is missing."""
    rng = np.random.default_rng(seed)
    tall = op if op.shape[1] <= op.shape[0] else op.T  # n ≤ m: V_q spans ℝⁿ
    q = tall.shape[1]
    steps = min(q, max_steps or DEFAULT_STEPS)
    bd = _bidiagonalise(tall, steps, rng)
    B = np.zeros((op.batch, steps, steps))
    idx = np.arange(steps)
    B[:, idx, idx] = bd.alpha
    B[:, idx[:-1], idx[1:]] = bd.beta[:, :-1]
    X, theta, _ = np.linalg.svd(B)
    resid = np.abs(bd.beta[:, -1:]) * np.abs(X[:, -1, :])  # (B, steps): β_k |x_i[k]|
    exact = steps == q
    sigma, res = theta.ravel(), resid.ravel()
    order = np.argsort(sigma)
    chosen = np.concatenate([order[:k], order[-k:]])
    smax = float(sigma.max()) if sigma.size else 0.0
    residual = float(res[chosen].max() / smax) if smax > 0 else 0.0
    products = bd.products
    moments: tuple[float, float] | None = None
    if not exact:
        moments = _hutchinson(tall, probes, rng)
        products += 2 * probes
    return _summary(sigma, k=k, method="lanczos", n_products=products, shape=op.shape, batch=op.batch,
                    steps=steps, exact=exact, residual=residual, moments=moments)


def _bidiagonalise(op: LinearMap, steps: int, rng: np.random.Generator) -> _Bidiagonal:
    """Golub–Kahan bidiagonalisation with full reorthogonalisation and restarts at breakdown."""
    Bn, (m, n) = op.batch, op.shape
    U = np.zeros((Bn, m, steps))
    V = np.zeros((Bn, n, steps + 1))
    alpha, beta = np.zeros((Bn, steps)), np.zeros((Bn, steps))
    V[:, :, 0] = _fresh(rng, V[:, :, :0], Bn)
    scale = np.zeros(Bn)  # the largest α or β seen per block: ‖J‖ from below
    u_prev, b_prev = np.zeros((Bn, m)), np.zeros(Bn)
    products = 0
    for j in range(steps):
        p = np.asarray(op.matvec(V[:, :, j]), dtype=np.float64).reshape(Bn, m) - b_prev[:, None] * u_prev
        products += 1
        U[:, :, j], alpha[:, j], scale = _next_vector(_orthogonalise(p, U[:, :, :j]), U[:, :, :j], scale, rng)
        r = np.asarray(op.rmatvec(U[:, :, j]), dtype=np.float64).reshape(Bn, n)
        r = r - alpha[:, j, None] * V[:, :, j]
        products += 1
        r = _orthogonalise(r, V[:, :, : j + 1])
        if j + 1 < n:
            V[:, :, j + 1], beta[:, j], scale = _next_vector(r, V[:, :, : j + 1], scale, rng)
        else:  # complete: r ⟂ a basis of ℝⁿ is round-off; β_q only enters the residual
            beta[:, j] = np.linalg.norm(r, axis=1)
        u_prev, b_prev = U[:, :, j], beta[:, j]
    return _Bidiagonal(alpha=alpha, beta=beta, products=products, steps=steps)


def _orthogonalise(w: F64, Q: F64) -> F64:
    """``w`` minus its components along the columns of ``Q`` (B, d, j), twice ("twice is enough")."""
    if Q.shape[2] == 0:
        return w
    for _ in range(2):
        w = w - np.einsum("bdj,bj->bd", Q, np.einsum("bdj,bd->bj", Q, w))
    return w


def _next_vector(w: F64, Q: F64, scale: F64, rng: np.random.Generator) -> tuple[F64, F64, F64]:
    """``(w/‖w‖, ‖w‖, new scale)`` per block; a breakdown gives a fresh unit vector ⟂ Q and 0."""
    norm = np.linalg.norm(w, axis=1)
    scale = np.maximum(scale, norm)
    broken = norm <= BREAKDOWN * scale
    out = np.where(broken[:, None], 0.0, w / np.where(broken, 1.0, norm)[:, None])
    if broken.any():
        rows = np.flatnonzero(broken)
        out[rows] = _fresh(rng, Q[rows], rows.size)
        norm = np.where(broken, 0.0, norm)
    return out, norm, scale


def _fresh(rng: np.random.Generator, Q: F64, rows: int) -> F64:
    """Seeded unit vectors orthogonal to the columns of ``Q`` (rows, d, j), one per row."""
    d = Q.shape[1]
    w = _orthogonalise(rng.standard_normal((rows, d)), Q)
    norm = np.linalg.norm(w, axis=1, keepdims=True)
    return np.where(norm > 0, w / np.where(norm > 0, norm, 1.0), 0.0)


def _hutchinson(op: LinearMap, probes: int, rng: np.random.Generator) -> tuple[float, float]:
    """Estimates of ``(mean_sq, var_sq)`` per singular value, over ``n ≤ m`` values per block."""
    n = op.shape[1]
    tr1, tr2 = 0.0, 0.0
    for _ in range(probes):
        z = rng.choice([-1.0, 1.0], size=(op.batch, n))
        jz = np.asarray(op.matvec(z), dtype=np.float64)
        jtjz = np.asarray(op.rmatvec(jz), dtype=np.float64)
        tr1 += float(np.sum(jz * jz)) / probes
        tr2 += float(np.sum(jtjz * jtjz)) / probes
    q = n * op.batch
    mean = tr1 / q
    return mean, max(tr2 / q - mean * mean, 0.0)


def _summary(
    sigma: F64,
    *,
    k: int,
    method: str,
    n_products: int,
    shape: tuple[int, int],
    batch: int,
    steps: int = 0,
    exact: bool = True,
    residual: float = 0.0,
    moments: tuple[float, float] | None = None,
) -> Spectrum:
    """A :class:`Spectrum` from the (union of the blocks') singular values."""
    s = np.sort(np.abs(np.asarray(sigma, dtype=np.float64)))
    if s.size == 0:
        return Spectrum(top=np.zeros(0), bottom=np.zeros(0), spread=math.nan, mean_sq=math.nan,
                        var_sq=math.nan, method=method, n_products=n_products, shape=shape,
                        batch=batch, steps=steps, exact=exact, residual=residual)
    smax, smin = float(s[-1]), float(s[0])
    spread = math.nan if smax == 0 else (math.inf if smin == 0 else smax / smin)
    sq = s * s
    mean, var = moments if moments is not None else (float(np.mean(sq)), float(np.var(sq)))
    return Spectrum(top=s[::-1][:k].copy(), bottom=s[:k].copy(), spread=spread, mean_sq=mean, var_sq=var,
                    method=method, n_products=n_products, shape=shape, batch=batch, steps=steps,
                    exact=exact, residual=residual)
