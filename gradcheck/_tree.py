"""Pytrees of arrays without JAX: flatten once into named leaves, rebuild with new leaves."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Leaf", "TreeDef", "flatten", "is_leaf_value", "path_name"]


@dataclass(frozen=True, slots=True)
class TreeDef:
    """The structure of a pytree: rebuilt by :meth:`unflatten` from a list of leaves.

    ``kind`` is ``"leaf"``, ``"dict"``, ``"list"``, ``"tuple"`` or ``"namedtuple"``; ``keys``
    are the dict keys (sorted as given by insertion order) and ``children`` the sub-structures.
    """

    kind: str
    keys: tuple[Any, ...] = ()
    children: tuple[TreeDef, ...] = ()
    factory: Callable[..., Any] | None = None

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)

    def unflatten(self, leaves: Sequence[Any]) -> Any:
        """Rebuild the tree with ``leaves`` in flattening order."""
        it = iter(leaves)
        out = self._build(it)
        return out

    def _build(self, it: Any) -> Any:
        if self.kind == "leaf":
            return next(it)
        built = [c._build(it) for c in self.children]
        if self.kind == "dict":
            return dict(zip(self.keys, built, strict=True))
        if self.kind == "list":
            return built
        if self.kind == "namedtuple":
            assert self.factory is not None
            return self.factory(*built)
        return tuple(built)


@dataclass(frozen=True, slots=True)
class Leaf:
    """One leaf of a flattened pytree: its path (as keys/indices) and its value."""

    path: tuple[Any, ...]
    value: Any

    @property
    def name(self) -> str:
        return path_name(self.path)


def path_name(path: Sequence[Any], root: str = "") -> str:
    """Format a pytree path as ``W``, ``layers[1].b`` or ``[0]``.

    Examples:
        >>> path_name(("layers", 1, "b"))
        'layers[1].b'
        >>> path_name((0,), root="params")
        'params[0]'
    """
    out = root
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        elif isinstance(key, str) and key.isidentifier():
            out += f".{key}" if out else key
        else:
            out += f"[{key!r}]"
    return out or "<root>"


def is_leaf_value(value: Any) -> bool:
    """True for what gradcheck treats as a tensor: arrays, numpy scalars and Python numbers."""
    return isinstance(value, np.ndarray | np.generic | int | float | complex) or hasattr(
        value, "__array_namespace__"
    )


def flatten(tree: Any) -> tuple[list[Leaf], TreeDef]:
    """Flatten dicts, lists, tuples and namedtuples of arrays into named leaves.

    Dict keys keep their insertion order, so leaf order follows how the user wrote the tree.
    ``None`` entries are kept as leaves; callers decide whether they are allowed.
    """
    leaves: list[Leaf] = []
    treedef = _flatten(tree, (), leaves)
    return leaves, treedef


def _flatten(tree: Any, path: tuple[Any, ...], out: list[Leaf]) -> TreeDef:
    if isinstance(tree, Mapping):
        keys = tuple(tree.keys())
        children = tuple(_flatten(tree[k], (*path, k), out) for k in keys)
        return TreeDef("dict", keys, children)
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        children = tuple(_flatten(v, (*path, f), out) for f, v in zip(tree._fields, tree, strict=True))
        return TreeDef("namedtuple", tuple(tree._fields), children, type(tree))
    if isinstance(tree, list | tuple):
        children = tuple(_flatten(v, (*path, i), out) for i, v in enumerate(tree))
        return TreeDef("list" if isinstance(tree, list) else "tuple", (), children)
    out.append(Leaf(path, tree))
    return TreeDef("leaf")
