"""Hand-derived backprop and BPTT reference layers, one module per layer family.

Every layer follows one protocol::

    layer.forward(params, x) -> y
    layer.backward(params, x, dy) -> (dparams, dx)

The forward is written once against the array namespace of its input
(``xp = x.__array_namespace__()``), so it runs on numpy and on jax.numpy arrays
alike; the backward is hand-derived numpy.  This package never imports
``gradcheck``: it is the thing being checked.
"""
