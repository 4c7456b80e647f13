"""The array namespace of an input: numpy for numpy arrays, jax.numpy for JAX arrays."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["namespace"]


def namespace(*arrays: Any) -> ModuleType:
    """Return the array-API namespace of ``arrays``: JAX's when any of them is a JAX array.

    Mixed inputs (numpy data with JAX parameters under ``jax.grad``) must compute in jax.numpy,
    so a non-numpy namespace wins over numpy.

    Args:
        *arrays: arrays (numpy or JAX) or Python scalars.

    Returns:
        The first non-numpy namespace among the arguments, else ``numpy``.
    """
    found: ModuleType = np
    for a in arrays:
        get = getattr(a, "__array_namespace__", None)
        if get is not None:
            space = get()
            if space is not np:
                return space  # type: ignore[no-any-return]
            found = space
    return found
