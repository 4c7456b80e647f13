"""Run the benchmarks and write ``benchmarks/RESULTS.md`` (the one documented command).

Usage::

    .venv/bin/python -m benchmarks.run [--quick] [--only cost|detection|speed|twin|higher|practice]
                                       [--speed] [--twin] [--higher] [--practice] [--out PATH]
                                       [--budget S]

The full run (about 7 minutes on 2 cores) writes ``benchmarks/RESULTS.md``,
``benchmarks/results.json`` (every measurement) and ``benchmarks/scaling.svg``.  ``--quick`` uses
tiny sizes and a handful of cases (about a minute) and writes to ``reports/benchmarks-quick.md``
unless ``--out`` says otherwise, so that it never overwrites the recorded figures.

RESULTS.md records the date, the machine (platform, ``lscpu`` model, ``nproc``, memory, load
average before and after), the exact command, the versions of numpy / jax / torch / gradcheck and
the commit, the tables, the ratios taken within the run, and which of the issue's targets are met —
computed from the numbers of this run, never typed in.

``--speed`` (or ``--only speed``) adds the section of :mod:`benchmarks.speed` (the targets of
issue 12 against the finite-difference floor and jitted ``check_grads``; also runnable alone as
``python -m benchmarks.speed``) and writes its numbers to ``speed.json`` next to the markdown
(``<stem>-speed.json`` for another ``--out``).

``--twin`` (or ``--only twin``) adds the section of :mod:`benchmarks.twin`: the mutation suite with
numpy-only forwards, with and without the automatic JAX twin, beside the array-API forwards; its
rows go to ``twin.json`` (``<stem>-twin.json``).

``--higher`` (or ``--only higher``) adds the section of :mod:`benchmarks.higher`: hand JVPs and
HVPs (with planted bugs) under ``check_jvp`` / ``check_hvp``, torch's forward-mode gradcheck and
gradgradcheck, and jax's ``check_grads``; its rows go to ``higher.json`` (``<stem>-higher.json``).

``--practice`` (or ``--only practice``) adds the section of :mod:`benchmarks.practice`: the
AUTOTRAINER and DeepDiagnosis gradient rules as ported, beside gradcheck's gradient-flow verdicts,
on models of known regime under loss rescaling and planted backward bugs, and Nielsen's per-layer
speeds of learning; its rows go to ``practice.json`` (``<stem>-practice.json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import gradcheck as gc
from benchmarks import cost, detection
from benchmarks.adapters import torch_available

__all__ = ["machine", "main", "targets", "versions"]

ROOT = Path(__file__).resolve().parent.parent


def _sh(cmd: Sequence[str]) -> str:
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=10,
                              cwd=ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, str]:
    """Platform, CPU model (``lscpu``), cores (``nproc``), memory and load average."""
    model = next((ln.split(":", 1)[1].strip() for ln in _sh(["lscpu"]).splitlines()
                  if ln.startswith("Model name")), platform.processor() or "unknown")
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": model,
            "nproc": _sh(["nproc"]) or str(os.cpu_count()), "memory": mem,
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def versions() -> dict[str, str]:
    """Versions of the checkers and the commit of this working tree."""
    import jax
    import jaxlib

    out = {"numpy": np.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
           "gradcheck": gc.__version__}
    if torch_available():
        import torch

        out["torch"] = torch.__version__
    else:
        out["torch"] = "not installed"
    commit = _sh(["git", "rev-parse", "--short", "HEAD"])
    dirty = bool(_sh(["git", "status", "--porcelain", "--untracked-files=no"]))
    out["commit"] = (commit + (" + uncommitted changes" if dirty else "")) if commit else "unknown"
    return out


# ----------------------------------------------------------------------------- targets


def _yes(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**met**" if ok else "**not met**")


def _at_least(slow: cost.Measurement, m: cost.Measurement, need: float) -> bool | None:
    """Whether ``m`` is at least ``need`` times faster than ``slow`` (warm times); None when a
    cut-off leaves it undecided."""
    if m.first.completed and slow.first.completed:
        return slow.warm_s / m.warm_s >= need
    if m.first.completed and slow.cut_off:  # torch's time is only a lower bound
        return True if slow.first.wall_s / m.warm_s >= need else None
    if m.cut_off and slow.first.completed:
        return False if slow.warm_s / m.first.wall_s < need else None
    return None


def targets(c: cost.CostResult | None, d: detection.DetectionResult | None) -> list[tuple[str, str, str]]:
    """``(target, measured, met)`` rows for the issue's targets, from this run's numbers."""
    rows: list[tuple[str, str, str]] = []
    p = "dense tanh 256²"
    if c is not None and c.get(p, "gc auto") is not None:
        auto, full = c.get(p, "gc auto"), c.get(p, "gc full")
        batch, jx, slow = c.get(p, "gc full (batch)"), c.get(p, "jax check_grads"), c.get(p, "torch slow")
        assert auto is not None
        if jx is not None and jx.first.completed:
            r = auto.warm_s / jx.warm_s
            rc = auto.first.wall_s / jx.first.wall_s
            rows.append(("correct 256² dense: `auto` within 3× of jax check_grads",
                         f"auto {auto.warm_s:.3g} s vs jax {jx.warm_s:.3g} s: {r:.2g}× "
                         f"(cold calls: {rc:.2g}×); jax's verdict: {jx.first.status}", _yes(r <= 3)))
        if slow is not None and slow.first.status != "not installed":
            for label, m, need in (
                    ("`auto` ≥ 100× faster than torch slow mode", auto, 100),
                    ("`full` ≥ 20× faster than torch slow mode (JAX-traceable forward)", full, 20),
                    ("`full` with `batch=True` ≥ 20× faster than torch slow mode", batch, 20)):
                if m is None:
                    continue
                txt = cost.speedup(slow, m)
                rows.append((f"correct 256² dense: {label}",
                             f"torch slow {cost.time_text(slow)} s, {m.checker} {cost.time_text(m)} s: "
                             f"{txt}", _yes(_at_least(slow, m, need))))
        else:
            rows.append(("correct 256² dense: ratios to torch slow mode", "torch not installed",
                         "not measured"))
    else:
        rows.append(("correct 256² dense: cost targets", "256² not in this run", "not measured"))
    if c is not None and c.wrong_entry and "256" in c.wrong_entry[0].problem:
        auto = next(m for m in c.wrong_entry if m.checker == "gc auto")
        slow = next((m for m in c.wrong_entry if m.checker == "torch slow"), None)
        found = auto.first.caught and bool(auto.first.named)
        ok: bool | None = None
        txt = (f"gc auto: caught={auto.first.caught}, named={auto.first.named}, "
               f"{auto.warm_s:.3g} s (cold {auto.first.wall_s:.3g} s)")
        if slow is not None and slow.first.status != "not installed":
            txt += f"; torch slow {cost.time_text(slow)} s: {cost.speedup(slow, auto)}"
            ok = False if not found else _at_least(slow, auto, 100)
        rows.append(("one wrong entry in a 256² layer found and named by index in < 1/100 of "
                     "torch slow mode", txt, _yes(ok)))
    if d is not None:
        k, n = d.recall("gc auto", d.target_rows())
        rows.append(("recall 100 % on float64 mutants with relative gradient error > 1e-6 (gc auto)",
                     f"{k}/{n}", _yes(k == n and n > 0)))
        fa, nc = d.false_alarms("gc auto")
        fa32, n32 = d.false_alarms("gc auto", "float32")
        fak, nk = d.false_alarms("gc auto", "kinks")
        rows.append(("zero false alarms on correct cases incl. float32 and kinks (gc auto)",
                     f"{fa}/{nc} (float32 cases: {fa32}/{n32}, kink-heavy: {fak}/{nk})",
                     _yes(fa == 0 and nc > 0)))
        mine = d.recall("gc auto")[0]
        for other in ("torch fast", "jax check_grads"):
            if not detection._installed(d, other):
                rows.append((f"strictly more catches than {other}", "not installed", "not measured"))
                continue
            theirs = d.recall(other)[0]
            rows.append((f"strictly more catches than {other} on the same suite",
                         f"gc auto {mine} vs {other} {theirs} (of {len(d.mutants)})",
                         _yes(mine > theirs)))
    return rows


# ----------------------------------------------------------------------------- observations


def observations(c: cost.CostResult | None, d: detection.DetectionResult | None) -> list[str]:
    """What this run shows about gradcheck that looks wrong: false alarms, misses, wrong leaves,
    errors, cut-offs, and checks slower than torch's slow mode."""
    notes: list[str] = []
    if d is not None:
        for r in d.correct:
            for ch, o in r.outcomes.items():
                if ch.startswith("gc") and o.status != "pass":
                    notes.append(f"false alarm: `{ch}` on correct `{r.case.name}`: {o.status}"
                                 + (f" ({o.detail})" if o.detail else "")
                                 + (f", failing leaves {list(o.failing)}" if o.failing else ""))
        for r in d.mutants:
            for ch, o in r.outcomes.items():
                if not ch.startswith("gc"):
                    continue
                if r.in_target_set and not o.caught:
                    notes.append(f"missed: `{ch}` on `{r.case.name}` (true error {r.rel_error:.1e}): "
                                 f"{o.status}" + (f" ({o.detail})" if o.detail else ""))
                if o.status == "error":
                    notes.append(f"error: `{ch}` on `{r.case.name}`: {o.detail}")
            auto = r.outcomes.get("gc auto")
            if (auto is not None and auto.caught and r.case.wrong_leaves
                    and set(auto.failing) != set(r.case.wrong_leaves)):
                notes.append(f"wrong leaves: `gc auto` on `{r.case.name}` fails {sorted(auto.failing)}, "
                             f"the bug touches {sorted(r.case.wrong_leaves)}")
            if (auto is not None and auto.caught and r.case.wrong_entry is not None
                    and not auto.named):
                notes.append(f"not named: `gc auto` caught `{r.case.name}` but its `worst` entries "
                             "do not include the wrong index")
    if c is not None:
        for m in c.rows + c.wrong_entry:
            if not m.checker.startswith("gc"):
                continue
            if m.cut_off or m.first.status == "error":
                notes.append(f"{m.first.status}: `{m.checker}` on `{m.problem}` after "
                             f"{m.first.forward_calls} forward calls, {m.first.wall_s:.0f} s"
                             + (f" ({m.first.detail})" if m.first.detail else ""))
            slow = c.get(m.problem, "torch slow", c.rows + c.wrong_entry)
            if (slow is not None and slow.first.completed and m.first.completed
                    and m.warm_s > slow.warm_s):
                notes.append(f"slower than torch slow mode: `{m.checker}` on `{m.problem}`: "
                             f"{m.warm_s:.3g} s vs {slow.warm_s:.3g} s "
                             f"({m.first.forward_calls} vs {slow.first.forward_calls} forward calls)")
            if m.first.completed and m.first.status != "pass" and "off by" not in m.problem:
                notes.append(f"verdict `{m.first.status}` on the correct `{m.problem}` by `{m.checker}`"
                             + (f" ({m.first.detail})" if m.first.detail else ""))
    return notes


# ----------------------------------------------------------------------------- main


def _command(argv: Sequence[str]) -> str:
    exe = os.path.relpath(sys.executable, Path.cwd())
    if exe.startswith(".."):
        exe = sys.executable
    return " ".join([shlex.quote(exe), "-m", "benchmarks.run", *map(shlex.quote, argv)])


def _json_default(o: Any) -> Any:
    if isinstance(o, frozenset | set | tuple):
        return list(o)
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    return str(o)


def main(argv: Sequence[str] | None = None, *, log: Callable[[str], None] | None = None) -> Path:
    """Parse arguments, run the sections, write the markdown (returned), JSON and plot."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and a handful of cases")
    ap.add_argument("--only", choices=("cost", "detection", "speed", "twin", "higher", "practice"),
                    help="run one section only")
    ap.add_argument("--speed", action="store_true", help="add the speed section (benchmarks/speed.py)")
    ap.add_argument("--twin", action="store_true", help="add the automatic-twin section "
                    "(benchmarks/twin.py)")
    ap.add_argument("--higher", action="store_true", help="add the forward-mode and second-order "
                    "section (benchmarks/higher.py)")
    ap.add_argument("--practice", action="store_true", help="add the practice-tools section "
                    "(benchmarks/practice.py)")
    ap.add_argument("--out", type=Path, help="the markdown file (default benchmarks/RESULTS.md; "
                    "reports/benchmarks-quick.md with --quick)")
    ap.add_argument("--budget", type=float, help="seconds per check before it is cut off "
                    "(default 120; 10 with --quick)")
    args = ap.parse_args(argv)
    say = log or (lambda s: print(s, flush=True))
    out = args.out or (ROOT / ("reports/benchmarks-quick.md" if args.quick else "benchmarks/RESULTS.md"))
    out = Path(out)
    budget = args.budget if args.budget is not None else (10.0 if args.quick else 120.0)
    started = dt.datetime.now(dt.UTC)
    mach, vers = machine(), versions()
    t0 = time.perf_counter()
    c = d = None
    if args.only in (None, "cost"):
        say("cost:")
        c = cost.run_cost(quick=args.quick, budget_s=budget, log=say)
    if args.only in (None, "detection"):
        say("detection:")
        d = detection.run_detection(quick=args.quick, budget_s=min(budget, 60.0), log=say)
    s = None
    if args.only == "speed" or (args.speed and args.only is None):
        from benchmarks import speed

        say("speed:")
        s = speed.run_speed(quick=args.quick, budget_s=budget, log=say)
    w = None
    if args.only == "twin" or (args.twin and args.only is None):
        from benchmarks import twin

        say("twin:")
        w = twin.run_twin(quick=args.quick, budget_s=min(budget, 60.0), log=say)
    h = None
    if args.only == "higher" or (args.higher and args.only is None):
        from benchmarks import higher

        say("higher:")
        h = higher.run_higher(quick=args.quick, log=say)
    pr = None
    if args.only == "practice" or (args.practice and args.only is None):
        from benchmarks import practice

        say("practice:")
        pr = practice.run_practice(quick=args.quick, log=say)
    total = time.perf_counter() - t0
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())

    stem = out.stem
    plot_path = out.with_name("scaling.svg" if stem == "RESULTS" else f"{stem}-scaling.svg")
    json_path = out.with_name("results.json" if stem == "RESULTS" else f"{stem}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    if c is not None:
        from benchmarks.plot import plot_scaling

        plot_scaling(c, plot_path)

    md: list[str] = []
    md.append("# gradcheck benchmarks" + (" — QUICK RUN (tiny sizes; not the recorded figures)"
                                         if args.quick else ""))
    md.append("")
    md.append(f"- **Date**: {started:%Y-%m-%d %H:%M} UTC; total {total / 60:.1f} min")
    md.append(f"- **Command**: `{_command(argv)}` (from the repository root)")
    md.append(f"- **Machine**: {mach['cpu']}, {mach['nproc']} cores (nproc), {mach['memory']}; "
              f"{mach['platform']}; Python {mach['python']}")
    md.append(f"- **Load average** (1, 5, 15 min) before: {mach['load']}; after: {load_after} — the "
              "machine is shared, so wall times carry noise from other processes; forward-call "
              "counts do not")
    md.append("- **Versions**: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    md.append("")
    md.append("Every checker checks the same hand-written numpy backward of the same layer: gradcheck "
              "through `gc.check_layer(layer, params, x, mode=..., seed=0)` as a user would; torch "
              "through a `torch.autograd.Function` (numpy forward, hand gradient × grad_output) and "
              "`torch.autograd.gradcheck(..., eps=1e-6, atol=1e-5, rtol=1e-3)` (its defaults) in "
              "slow and fast mode; JAX through a `jax.custom_vjp` over `jax.pure_callback` and "
              "`jax.test_util.check_grads(f, args, order=1, modes=('rev',))` under "
              "`jax.enable_x64(True)`. Forward calls are counted at the layer. See "
              "`benchmarks/adapters.py` for the details and `benchmarks/results.json` for every "
              "number.")
    md.append("")
    md.append("## Targets")
    md.append("")
    md.append("| target | measured (this run) | |")
    md.append("|---|---|---|")
    for t, m, ok in targets(c, d):
        md.append(f"| {t} | {m} | {ok} |")
    md.append("")
    if c is not None:
        md.append("## Cost")
        md.append("")
        md.append(cost.render(c).replace("](scaling.svg)", f"]({plot_path.name})"))
    if d is not None:
        md.append("## Detection power")
        md.append("")
        md.append(detection.render(d))
    if s is not None:
        md.append("## Speed")
        md.append("")
        md.append(speed.render(s))
    if w is not None:
        md.append("## The automatic JAX twin on numpy-only forwards")
        md.append("")
        md.append(twin.render(w))
    if h is not None:
        md.append("## Forward-mode and second-order checks")
        md.append("")
        md.append(higher.render(h))
    if pr is not None:
        md.append("## Side by side with the practice tools (AUTOTRAINER, DeepDiagnosis) and Nielsen's "
                  "speeds of learning")
        md.append("")
        md.append(practice.render(pr))
    notes = observations(c, d)
    md.append("## What this run shows about gradcheck")
    md.append("")
    md.extend(f"- {n}" for n in notes) if notes else md.append("- nothing: no false alarm, no miss, "
                                                              "no error, no cut-off.")
    md.append("")
    out.write_text("\n".join(md))
    payload = {"date": started.isoformat(), "command": _command(argv), "machine": mach,
               "load_after": load_after, "versions": vers, "total_s": total,
               "cost": c.to_dict() if c else None, "detection": d.to_dict() if d else None}
    json_path.write_text(json.dumps(payload, indent=1, default=_json_default, allow_nan=True))
    if s is not None:
        speed_json = out.with_name("speed.json" if stem == "RESULTS" else f"{stem}-speed.json")
        speed.dump(s, speed_json, {"date": started.isoformat(), "command": _command(argv),
                                   "machine": mach, "load_after": load_after, "versions": vers})
        say(f"wrote {speed_json}")
    for section, result in (("twin", w), ("higher", h), ("practice", pr)):
        if result is None:
            continue
        path = out.with_name(f"{section}.json" if stem == "RESULTS" else f"{stem}-{section}.json")
        path.write_text(json.dumps({"date": started.isoformat(), "command": _command(argv),
                                    "machine": mach, "versions": vers, **result.to_dict()},
                                   indent=1, default=_json_default, allow_nan=True))
        say(f"wrote {path}")
    say(f"wrote {out}, {json_path}" + (f", {plot_path}" if c is not None else ""))
    return out


if __name__ == "__main__":
    main()
