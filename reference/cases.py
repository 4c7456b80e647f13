"""The reference zoo's declared gradient-check cases, audited by ``gradcheck audit``.

Declared as plain dicts (this package never imports gradcheck): ``layer``, ``params``, ``x``
and ``family``, for every layer family, a fixed set of seeds and shapes, float64 and float32;
and the checks beyond first-order reverse mode (``check_jvp``, ``check_hvp``, ``check_batched``),
by the keys that name their kind (``jvp``; ``hvp``; ``per_example_grad``): the hand JVPs of
dense, MLP and the Elman RNN (RTRL), the R-operator HVPs of dense and MLP (SSE and softmax
cross-entropy), and the MLP's per-example gradients, float64 and float32, one seed each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Any

import numpy as np

__all__ = ["GRADCHECK_CASES", "declared", "higher"]

Factory = Callable[..., tuple[Any, Any, Any]]

# family, module, factory name, keyword variants (each becomes one case per dtype and seed)
_SPECS: list[tuple[str, str, str, list[dict[str, Any]]]] = [
    ("activations", "reference.activations", "make_case",
     [{"activation": a} for a in ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax")]),
    ("losses", "reference.losses", "make_case",
     [{"loss": "sse"}, {"loss": "mse"}, {"loss": "bce"}, {"loss": "sigmoid_bce"},
      {"loss": "softmax_ce", "targets": "labels"}, {"loss": "softmax_ce", "targets": "probs"}]),
    ("dense", "reference.dense", "make_case",
     [{"activation": a} for a in ("identity", "sigmoid", "tanh", "relu")] + [{"batch": 1, "d_in": 1}]),
    ("mlp", "reference.mlp", "make_case",
     [{"sizes": (4, 5, 3)}, {"sizes": (3, 4, 4, 2), "hidden_activation": "sigmoid"}, {"batch": 1}]),
    ("conv", "reference.conv", "make_case",
     [{"stride": 1, "pad": 1}, {"stride": 2, "pad": 0, "height": 6, "width": 5},
      {"batch": 1, "channels": 1, "filters": 1, "kernel": 2}]),
    ("pooling", "reference.pooling", "make_maxpool_case",
     [{"size": 3, "stride": 2}, {"size": 2, "stride": 2}]),
    ("pooling", "reference.pooling", "make_avgpool_case",
     [{"size": 3, "stride": 2}, {"size": 2, "stride": 1}]),
    ("recursive", "reference.recursive", "make_case", [{"tree": "balanced"}, {"tree": "unbalanced"},
                                                       {"tree": "single"}]),
    ("rnn", "reference.rnn", "make_case",
     [{"activation": "tanh"}, {"activation": "sigmoid"}, {"activation": "relu"}, {"T": 1, "B": 1}]),
    ("lstm", "reference.lstm", "make_case", [{}, {"T": 1, "B": 1}]),
    ("gru", "reference.gru", "make_case", [{}, {"T": 1, "B": 1}]),
]
_SEEDS = (0, 1)
_DTYPES = (np.float64, np.float32)


def _label(kwargs: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in kwargs.items()) or "default"


def declared() -> Iterator[dict[str, Any]]:
    """Yield every zoo case; a family whose module is missing is skipped."""
    for family, module_name, factory_name, variants in _SPECS:
        try:
            factory: Factory = getattr(import_module(module_name), factory_name)
        except (ImportError, AttributeError):
            continue
        for kwargs in variants:
            for dtype in _DTYPES:
                for seed in _SEEDS:
                    layer, params, x = factory(np.random.default_rng(seed), dtype=dtype, **kwargs)
                    name = (f"{family}/{factory_name.removeprefix('make_').removesuffix('_case')}"
                            f"[{_label(kwargs)}]/{np.dtype(dtype).name}/seed{seed}")
                    yield {"name": name.replace("/case[", "["), "family": family, "layer": layer,
                           "params": params, "x": x, "options": {"seed": seed}}


def _jvp_cases(dtype: Any, seed: int) -> Iterator[dict[str, Any]]:
    for family, module_name, kwargs in (("dense", "reference.dense", {"activation": "tanh"}),
                                        ("mlp", "reference.mlp", {}),
                                        ("rnn", "reference.rnn", {"T": 4})):
        module = import_module(module_name)
        layer, params, x = module.make_case(np.random.default_rng(seed), dtype=dtype, **kwargs)
        fun, jvp = module.jvp_fun(layer, x)
        yield {"name": f"{family}/jvp[{_label(kwargs)}]/{np.dtype(dtype).name}/seed{seed}",
               "family": f"{family}-jvp", "fun": fun, "jvp": jvp, "params": params,
               "options": {"seed": seed}}


def _hvp_cases(dtype: Any, seed: int) -> Iterator[dict[str, Any]]:
    from reference import dense, mlp

    rng = np.random.default_rng(seed)
    layer, params, x = dense.make_case(rng, dtype=dtype, activation="tanh")
    target = rng.standard_normal(layer.forward(params, x).shape).astype(dtype)
    yield {"name": f"dense/hvp[sse,activation=tanh]/{np.dtype(dtype).name}/seed{seed}",
           "family": "dense-hvp", "fun": layer.sse_loss, "hvp": layer.sse_hvp, "grad": layer.sse_grad,
           "params": params, "args": (x, target), "options": {"seed": seed}}
    net, params, x = mlp.make_case(rng, dtype=dtype, sizes=(3, 4, 3))
    target = rng.standard_normal((x.shape[0], 3)).astype(dtype)
    labels = rng.integers(0, 3, x.shape[0])
    for loss, d in (("sse", target), ("xent", labels)):
        yield {"name": f"mlp/hvp[{loss}]/{np.dtype(dtype).name}/seed{seed}", "family": "mlp-hvp",
               "fun": getattr(net, f"{loss}_loss"), "hvp": getattr(net, f"{loss}_hvp"),
               "grad": getattr(net, f"{loss}_grad"), "params": params, "args": (x, d),
               "options": {"seed": seed}}


def _per_example_cases(dtype: Any, seed: int) -> Iterator[dict[str, Any]]:
    from reference import mlp

    rng = np.random.default_rng(seed)
    net, params, x = mlp.make_case(rng, dtype=dtype, sizes=(4, 5, 3), batch=5)
    for loss, t in (("sse", rng.standard_normal((5, 3))), ("xent", rng.dirichlet(np.ones(3), size=5))):
        losses, grads = mlp.per_example_fun(net, loss)
        yield {"name": f"mlp/per_example[{loss}]/{np.dtype(dtype).name}/seed{seed}",
               "family": "mlp-batched", "loss": losses, "per_example_grad": grads,
               "params": params, "batch": {"x": x, "t": t.astype(dtype)}, "options": {"seed": seed}}


def higher() -> Iterator[dict[str, Any]]:
    """Yield the forward-mode, second-order and per-example cases (one seed, both dtypes)."""
    for dtype in _DTYPES:
        yield from _jvp_cases(dtype, 0)
        yield from _hvp_cases(dtype, 0)
        yield from _per_example_cases(dtype, 0)


def GRADCHECK_CASES() -> list[dict[str, Any]]:
    """All zoo cases, built fresh (the audit calls this)."""
    return [*declared(), *higher()]
