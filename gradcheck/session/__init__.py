"""The pytest plugin's machinery, one job a module; :mod:`gradcheck.plugin` is the shell that
wires them to pytest's hooks.  Internal: nothing here is a public API.

Imports go one way, each module only from those above it:

* :mod:`~gradcheck.session.settings`: run-wide ``--gradcheck-*`` / ini settings;
* :mod:`~gradcheck.session.markers`: ``@pytest.mark.gradcheck`` options, checked by
  :mod:`gradcheck.options`;
* :mod:`~gradcheck.session.falsifying`: a hypothesis test's minimal failing example;
* :mod:`~gradcheck.session.records`: what a test recorded, and its report rows;
* :mod:`~gradcheck.session.summary`: the terminal summary and junitxml properties of rows;
* :mod:`~gradcheck.session.merge`: the per-run state, merging the rows reports carry, and the
  run's id and status;
* :mod:`~gradcheck.session.recorder`: the ``gradcheck`` fixture, recording into that state;
* :mod:`~gradcheck.session.output`: the run's end: its reports written, each on its own.

None of them imports JAX, hypothesis or a template engine when imported (the fixture imports
the check functions when a check runs, settings and output import :mod:`gradcheck.report` only
when a report is asked for), so loading the plugin stays cheap.  This package
imports none of its modules, so importing one loads only what it needs.
"""
