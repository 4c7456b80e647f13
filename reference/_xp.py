"""The array namespace of an input: numpy for numpy arrays, jax.numpy for JAX arrays."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["namespace"]


def namespace(*arrays: Any) -> ModuleType:
    """Return the array-API namespace shared by ``arrays`` (numpy for plain Python numbers).

    Args:
        *arrays: arrays (numpy or JAX) or Python scalars.

    Returns:
        The namespace of the first argument that has one, else ``numpy``.
    """
    for a in arrays:
        get = getattr(a, "__array_namespace__", None)
        if get is not None:
            return get()  # type: ignore[no-any-return]
    return np
