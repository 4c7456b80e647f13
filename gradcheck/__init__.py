"""gradcheck: check hand-derived gradients against finite differences and JAX, and say why.

The public contract (see DESIGN.md)::

    res = gc.check_grad(fun, grad, params, *args, **options)
    res = gc.check_layer(layer, params, x, **options)
    res = gc.check_jvp(fun, jvp, params, *args, **options)          # forward mode: J·v
    res = gc.check_layer_jvp(layer, params, x, **options)            # layer.jvp(params, x, dp, dx)
    res = gc.check_hvp(fun, hvp, params, *args, grad=None, **options)  # second order: H·v
    res = gc.check_batched(loss, per_example_grad, params, batch, *args, axis=0, **options)
    res.passed, res.verdict, res.leaves, res.to_dict(), res.raise_for_failure()
    flow = gc.gradient_flow(layer_or_cell, params, x)   # vanishing / exploding through time, depth
"""

from gradcheck.adapters import cs231n_layer, loss_and_grads, stateful_layer
from gradcheck.batched import check_batched
from gradcheck.check import CheckOptions, Mode, check_grad, check_layer
from gradcheck.dynamics import Cell, ClipReport, FlowResult, gradient_flow
from gradcheck.errors import (
    GradcheckError,
    GradientMismatch,
    GradientStructureError,
    InputMutated,
    InvalidArgument,
    NonDeterministic,
    NonFiniteError,
    UserCodeError,
)
from gradcheck.hvp import check_hvp
from gradcheck.jvp import check_jvp, check_layer_jvp
from gradcheck.result import (
    SCHEMA_VERSION,
    Agreement,
    CheckResult,
    Control,
    Diagnosis,
    Element,
    LeafResult,
    Localisation,
    Probe,
)
from gradcheck.tolerance import GRAD_RTOL, tolerance

__version__ = "0.1.0"

__all__ = [
    "GRAD_RTOL",
    "SCHEMA_VERSION",
    "Agreement",
    "Cell",
    "CheckOptions",
    "CheckResult",
    "ClipReport",
    "Control",
    "Diagnosis",
    "Element",
    "FlowResult",
    "GradcheckError",
    "GradientMismatch",
    "GradientStructureError",
    "InputMutated",
    "InvalidArgument",
    "LeafResult",
    "Localisation",
    "Mode",
    "NonDeterministic",
    "NonFiniteError",
    "Probe",
    "UserCodeError",
    "__version__",
    "check_batched",
    "check_grad",
    "check_hvp",
    "check_jvp",
    "check_layer",
    "check_layer_jvp",
    "cs231n_layer",
    "gradient_flow",
    "loss_and_grads",
    "stateful_layer",
    "tolerance",
]
