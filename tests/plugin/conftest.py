"""The plugin's tests run sample projects with ``pytester`` (enabled per module by
``pytest_plugins = ("pytester",)``: a non-root conftest may not declare plugins).

Most run in this process (``runpytest_inprocess``): a subprocess costs two seconds of start-up
(Python, pytest, hypothesis, NumPy) for a run of a tenth of that.  Runs that must own their
process stay subprocesses: a worker killed on purpose, a process that dies hard, the plugin's
import footprint.

JAX is imported here, before any in-process run: pytester forgets every module a run imported
first (so that a sample project's modules do not leak into the next), and jaxlib's extension
aborts the process when it is imported a second time.
"""

import jax  # noqa: F401  (see above: imported once, before the in-process runs)
