"""The plugin's tests run sample projects in subprocesses (``pytester``, enabled per module by
``pytest_plugins = ("pytester",)``: a non-root conftest may not declare plugins)."""
