"""Hypothesis profiles: ``default`` keeps the suite quick (20 examples a property; the README's test
command, five minutes on two cores); ``thorough`` is the long property run
(``HYPOTHESIS_PROFILE=thorough``, 1000); ``ci`` is ``default`` derandomised so CI failures
reproduce.  An expensive property asks :func:`tests._profile.examples` for a count that scales with
the profile.

And one JAX compilation cache for the whole test session.  Nearly all the suite's time is XLA
compiling: every JAX primitive at every new shape, and every compiled reference, is compiled
once per process (tens of milliseconds to a second each on 2 cores), and the pytest-xdist
workers, the console-script runs and the pytester subprocesses are separate processes that meet
the same shapes.  The session's controller makes a fresh folder, hands it to every process it
starts through ``JAX_COMPILATION_CACHE_DIR`` (which JAX reads when it is imported), and removes
it at the end; a cache the caller set already is used as it is.  It changes no result: a cached
program is the compiled program.  gradcheck itself never sets it (it is the user's process).

The same processes compile at XLA's backend optimisation level 0 (``XLA_FLAGS``, unless the
caller's flags already name a level): the eager primitives of a test compile about a quarter
faster, and they run on arrays of a few dozen entries.  The level changes no number: XLA's CPU
backend does not reassociate floating point at any level (no fast-math), and gradcheck's own
reference programs compile at level 0 already (``gradcheck.autodiff.REFERENCE_COMPILER_OPTIONS``)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, settings

_common = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("default", max_examples=20, **_common)
settings.register_profile("ci", max_examples=20, derandomize=True, **_common)
settings.register_profile("thorough", max_examples=1000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))

_CACHE_VARIABLES = {"JAX_COMPILATION_CACHE_DIR": None,
                    # every compile, however short: most are eager primitives of 10-100 ms
                    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
_made: list[str] = []


_LEVEL_FLAG = "--xla_backend_optimization_level"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if _LEVEL_FLAG not in flags:  # read when JAX first starts its CPU backend, in every process
        os.environ["XLA_FLAGS"] = f"{flags} {_LEVEL_FLAG}=0".strip()
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    folder = tempfile.mkdtemp(prefix="gradcheck-tests-jax-cache-")
    _made.append(folder)
    for name, value in _CACHE_VARIABLES.items():
        os.environ[name] = folder if value is None else value
    if "jax" in sys.modules:  # imported already (a plugin): JAX read the variables then
        import jax

        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _made:
        folder = _made.pop()
        for name in _CACHE_VARIABLES:
            os.environ.pop(name, None)
        shutil.rmtree(folder, ignore_errors=True)
