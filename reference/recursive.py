"""Recursive tanh network on a binary tree, weights tied across nodes: backprop through structure.

Symbols (the code's own names)::

    x     (n_leaves, D) or (n_leaves, N, D)   leaf vectors (optionally a batch of N per leaf)
    W     (D, 2D)                             composition weights, shared by every inner node
    b     (D,)                                bias, shared by every inner node
    tree  nested pairs of leaf indices, e.g. ((0, 1), (2, (3, 4))), or a single index
    p_v   (D,) or (N, D)                      the vector of node v; y = p_root

Forward (post-order; ``l``, ``r`` the left and right children of an inner node ``v``)::

    p_v  = x[i]                                   for a leaf v holding index i
    c_v  = [p_l ; p_r]                            (2D,): the children concatenated
    p_v  = tanh(W c_v + b)                        for an inner node v
    y    = p_root                                 (a single-leaf tree gives y = x[i])

Backward (BPTS, pre-order from the root; ``g_v = ∂L/∂p_v``, ``L = Σ dy ⊙ y``)::

    g_root   = dy
    δ_v      = g_v ⊙ (1 − p_v²)                   for an inner node v
    dW      += δ_v c_vᵀ         db += δ_v         (tied weights: summed over ALL inner nodes,
                                                   and over the batch)
    g_c      = Wᵀ δ_v           g_l = g_c[:D]     g_r = g_c[D:]
    dx[i]   += g_v                                for a leaf v holding index i (a leaf index
                                                   used several times accumulates; an unused
                                                   leaf gets zero)

This is the BPTS of Goller & Küchler (1996), the tree analogue of BPTT: the same ``W`` is
applied at every inner node, so its gradient is the sum of the per-node contributions.
The forward is written once against ``xp`` (numpy or jax.numpy); the backward is plain numpy
and recurses over the same tree, using a private numpy forward cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias, Union

import numpy as np
import numpy.typing as npt

from reference._xp import namespace

__all__ = [
    "RecursiveNet",
    "Tree",
    "balanced_tree",
    "chain_tree",
    "make_case",
    "tree_leaves",
]

Array = Any  # numpy or JAX array (the forward runs on both)
NDArray = npt.NDArray[Any]  # numpy array (the backward returns these)


Tree: TypeAlias = Union[int, tuple["Tree", "Tree"]]  # noqa: UP007 (recursive alias)


def tree_leaves(tree: Tree) -> list[int]:
    """The leaf indices of ``tree``, left to right (with repeats if an index repeats)."""
    if isinstance(tree, int):
        return [tree]
    return tree_leaves(tree[0]) + tree_leaves(tree[1])


def balanced_tree(n_leaves: int) -> Tree:
    """A balanced binary tree over leaves ``0 … n_leaves−1`` (left half gets the smaller part).

    Examples:
        >>> balanced_tree(5)
        ((0, 1), (2, (3, 4)))
    """
    return _balanced(0, n_leaves)


def _balanced(lo: int, hi: int) -> Tree:
    if hi - lo < 1:
        raise ValueError(f"balanced_tree: need at least one leaf, got {hi - lo}.")
    if hi - lo == 1:
        return lo
    mid = lo + (hi - lo) // 2
    return (_balanced(lo, mid), _balanced(mid, hi))


def chain_tree(n_leaves: int) -> Tree:
    """A maximally unbalanced (left-deep) tree: ``(((0, 1), 2), 3)`` for 4 leaves.

    Examples:
        >>> chain_tree(4)
        (((0, 1), 2), 3)
    """
    if n_leaves < 1:
        raise ValueError(f"chain_tree: need at least one leaf, got {n_leaves}.")
    tree: Tree = 0
    for i in range(1, n_leaves):
        tree = (tree, i)
    return tree


def _validate(tree: Tree) -> None:
    if isinstance(tree, bool) or not isinstance(tree, int | tuple):
        raise ValueError(f"RecursiveNet: a tree node must be an int or a pair, got {tree!r}.")
    if isinstance(tree, int):
        if tree < 0:
            raise ValueError(f"RecursiveNet: leaf index {tree} must be >= 0.")
        return
    if len(tree) != 2:
        raise ValueError(f"RecursiveNet: inner nodes are pairs, got {len(tree)} children.")
    _validate(tree[0])
    _validate(tree[1])


@dataclass(frozen=True)
class _Leaf:
    """Forward cache of a leaf: its index."""

    index: int


@dataclass(frozen=True)
class _Inner:
    """Forward cache of an inner node: p_v, c_v = [p_l; p_r] and the children's caches."""

    p: NDArray
    c: NDArray
    left: _Leaf | _Inner
    right: _Leaf | _Inner


@dataclass(frozen=True)
class RecursiveNet:
    """A tanh recursive network over a fixed binary ``tree``, tied ``W``, ``b`` at every node.

    ``p_v = tanh(W [p_l; p_r] + b)`` at inner nodes, ``p_v = x[i]`` at leaves, ``y = p_root``;
    backward through structure accumulates ``dW += δ_v [p_l; p_r]ᵀ``, ``db += δ_v`` over all
    inner nodes, ``δ_v = g_v ⊙ (1 − p_v²)``, and sends ``Wᵀδ_v`` split in halves to the children.

    Args:
        tree: nested pairs of leaf indices (row indices into ``x``), e.g.
            ``((0, 1), (2, (3, 4)))``, or a single index for a one-leaf tree (y = x[i]).

    Notes:
        Params ``{"W": (D, 2D), "b": (D,)}``; x (n_leaves, D) → y (D,), or batched
        x (n_leaves, N, D) → y (N, D). Every leaf index must be < n_leaves.
        Recursion depth equals the tree depth (fine for the small trees used here).

    References:
        C. Goller, A. Küchler, "Learning task-dependent distributed representations by
        backpropagation through structure", ICNN 1996.
    """

    tree: Tree = ((0, 1), (2, (3, 4)))

    def __post_init__(self) -> None:
        _validate(self.tree)

    def _check(self, w_shape: tuple[int, ...], x_shape: tuple[int, ...]) -> None:
        d = w_shape[0] if len(w_shape) == 2 else -1
        if w_shape != (d, 2 * d) or len(x_shape) not in (2, 3) or x_shape[-1] != d:
            raise ValueError(
                f"RecursiveNet: expected W (D, 2D) and x (n_leaves, [N,] D), "
                f"got W{w_shape} and x{x_shape}."
            )
        if max(tree_leaves(self.tree)) >= x_shape[0]:
            raise ValueError(
                f"RecursiveNet: tree uses leaf {max(tree_leaves(self.tree))} but x has "
                f"{x_shape[0]} leaves."
            )

    def forward(self, params: dict[str, Array], x: Array) -> Array:
        """y = p_root.

        Args:
            params: ``{"W": (D, 2D), "b": (D,)}``.
            x: leaf vectors, (n_leaves, D) or (n_leaves, N, D).

        Returns:
            y, (D,) or (N, D), same namespace and dtype as the inputs.
        """
        w, b = params["W"], params["b"]
        self._check(tuple(w.shape), tuple(x.shape))
        xp = namespace(x, w, b)

        def node(t: Tree) -> Array:
            if isinstance(t, int):
                return x[t]
            c = xp.concatenate([node(t[0]), node(t[1])], axis=-1)
            return xp.tanh(xp.matmul(c, w.T) + b)

        return node(self.tree)

    def _forward_cache(self, w: NDArray, b: NDArray, x: NDArray) -> _Leaf | _Inner:
        """numpy forward keeping, per inner node, what the backward needs: p_v and c_v."""

        def node(t: Tree) -> _Leaf | _Inner:
            if isinstance(t, int):
                return _Leaf(t)
            left, right = node(t[0]), node(t[1])
            c = np.concatenate([_value(left, x), _value(right, x)], axis=-1)
            return _Inner(np.tanh(c @ w.T + b), c, left, right)

        return node(self.tree)

    def backward(
        self, params: dict[str, Array], x: Array, dy: Array
    ) -> tuple[dict[str, NDArray], NDArray]:
        """Backpropagation through structure.

        Args:
            params: ``{"W": (D, 2D), "b": (D,)}``.
            x: leaf vectors, (n_leaves, D) or (n_leaves, N, D).
            dy: ∂L/∂y, shaped like y: (D,) or (N, D).

        Returns:
            ``({"W": dW, "b": db}, dx)`` with the shapes and dtypes of ``params`` and ``x``.
        """
        w, b, xn, d = (np.asarray(a) for a in (params["W"], params["b"], x, dy))
        self._check(w.shape, xn.shape)
        ft = np.result_type(w, b, xn, d)
        dw, db, dx = np.zeros(w.shape, ft), np.zeros(b.shape, ft), np.zeros(xn.shape, ft)
        dim = w.shape[0]

        def back(v: _Leaf | _Inner, g: NDArray) -> None:
            if isinstance(v, _Leaf):
                dx[v.index] += g
                return
            delta = g * (1 - v.p**2)
            dw[...] += delta.reshape(-1, dim).T @ v.c.reshape(-1, 2 * dim)
            db[...] += delta.reshape(-1, dim).sum(axis=0)
            g_c = delta @ w
            back(v.left, g_c[..., :dim])
            back(v.right, g_c[..., dim:])

        back(self._forward_cache(w, b, xn), d)
        return {"W": dw.astype(w.dtype), "b": db.astype(b.dtype)}, dx.astype(xn.dtype)


def _value(v: _Leaf | _Inner, x: NDArray) -> NDArray:
    """p_v from a cache node (leaves read x)."""
    out: NDArray = x[v.index] if isinstance(v, _Leaf) else v.p
    return out


def make_case(
    rng: np.random.Generator,
    *,
    dtype: npt.DTypeLike = np.float64,
    tree: str | Tree = "balanced",
    n_leaves: int | None = None,
    width: int = 3,
    batch: int | None = None,
) -> tuple[RecursiveNet, dict[str, NDArray], NDArray]:
    """A small RecursiveNet case.

    Args:
        rng: the source of randomness.
        dtype: dtype of params and input.
        tree: ``"balanced"`` (``balanced_tree(n_leaves)``), ``"unbalanced"``
            (``chain_tree(n_leaves)``), ``"single"`` (one leaf, y = x[0]) or an explicit tree.
        n_leaves: number of rows of x, and of leaves for ``"balanced"`` / ``"unbalanced"``
            (default 5 there; default max leaf index + 1 for ``"single"`` and explicit trees).
        width: D, the vector size of every node.
        batch: None for x (n_leaves, D) → y (D,); N for x (n_leaves, N, D) → y (N, D).

    Returns:
        ``(RecursiveNet(tree), {"W": (D, 2D), "b": (D,)}, x)`` with ``W ~ N(0, 0.5/D)``
        (pre-activations O(1): tanh away from saturation), ``b ~ N(0, 0.1²)``, ``x ~ N(0, 1)``.
    """
    if tree == "single":
        t: Tree = 0
    elif tree == "balanced":
        t = balanced_tree(5 if n_leaves is None else n_leaves)
    elif tree == "unbalanced":
        t = chain_tree(5 if n_leaves is None else n_leaves)
    elif isinstance(tree, str):
        raise ValueError(
            f"make_case: tree={tree!r}; use 'balanced', 'unbalanced', 'single' or a tree."
        )
    else:
        t = tree
    n = max(tree_leaves(t)) + 1 if n_leaves is None else n_leaves
    layer = RecursiveNet(tree=t)
    w = rng.normal(0.0, np.sqrt(0.5 / width), size=(width, 2 * width))
    params = {"W": w.astype(dtype), "b": (0.1 * rng.normal(size=width)).astype(dtype)}
    shape = (n, width) if batch is None else (n, batch, width)
    x = rng.normal(size=shape).astype(dtype)
    layer._check(params["W"].shape, x.shape)
    return layer, params, x
