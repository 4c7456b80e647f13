"""Inline SVG figures of the report: gradient-flow plots (matplotlib) and error heat maps.

Every figure is a self-contained ``<svg>`` fragment to paste into one HTML page, so the ids it
defines are made unique per figure (matplotlib reuses ``patch_1``, ``clip0``, ... in every SVG)
and the references to them (``url(#…)``, ``href="#…"``) are rewritten to match.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["flow_svg", "heatmap_svg", "number", "prefix_svg_ids"]

_ID = re.compile(r'\bid="([^"]+)"')
_URL = re.compile(r"url\(#([^)\s]+)\)")
_HREF = re.compile(r'((?:xlink:)?href)="#([^"]+)"')
_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.DOTALL)
# matplotlib's <metadata> is dead weight, and its <style> rule "*{...}" would apply to the whole page
_DROP = re.compile(r"\s*<metadata>.*?</metadata>|\s*<style[^>]*>.*?</style>", re.DOTALL)
_HEAT_SIZE = 320  # the largest side of a heat map, in px
_SVG_NS = 'xmlns="http://www.w3.org/2000/svg"'


def number(x: Any) -> float | None:
    """A schema number as a float: numbers and the strings ``"nan"``/``"inf"``; else ``None``."""
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return None
    return None


def prefix_svg_ids(svg: str, prefix: str) -> str:
    """Prefix every id an SVG defines, and every ``url(#id)`` / ``href="#id"`` pointing at one."""
    defined = set(_ID.findall(svg))

    def ref(name: str) -> str:
        return prefix + name if name in defined else name

    svg = _ID.sub(lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = _URL.sub(lambda m: f"url(#{ref(m.group(1))})", svg)
    return _HREF.sub(lambda m: f'{m.group(1)}="#{ref(m.group(2))}"', svg)


def _series(values: Any) -> list[float]:
    out = [number(v) for v in values] if isinstance(values, list) else []
    return [math.nan if v is None else v for v in out]


def _bound(norms: Sequence[float], eta: float | None) -> list[float] | None:
    """``‖∂L/∂h_{T−1}‖ · η^(T−1−t)``: Pascanu's bound on the norms, anchored at the last step."""
    if not norms or eta is None or not math.isfinite(eta) or eta <= 0:
        return None
    last = norms[-1]
    if not math.isfinite(last) or last <= 0:
        return None
    n = len(norms)
    return [last * eta ** (n - 1 - t) for t in range(n)]


def flow_svg(flow: Mapping[str, Any], prefix: str) -> str | None:
    """The norms of ∂L/∂h_t against t (log scale) with the bound η^(T−1−t), as inline SVG.

    Returns ``None`` when the flow has no positive finite norm to plot.
    """
    hand, auto = _series(flow.get("hand_norms")), _series(flow.get("autodiff_norms"))
    norms = hand or auto
    if not any(math.isfinite(v) and v > 0 for v in norms):
        return None
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    depth = flow.get("axis") == "depth"
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": prefix, "font.size": 9}):
        fig = Figure(figsize=(5.6, 3.0))
        ax = fig.add_subplot()
        steps = list(range(len(norms)))
        if hand:
            ax.semilogy(steps, hand, "o-", ms=3, lw=1.4, label="hand")
        if auto:
            ax.semilogy(list(range(len(auto))), auto, "x--", ms=4, lw=1, label="autodiff")
        bound = None if depth else _bound(norms, number(flow.get("eta")))
        if bound:
            ax.semilogy(steps, bound, ":", color="0.3", lw=1.2,
                        label=f"η^(T−1−t) bound, η = {number(flow.get('eta')):.3g}")
        ax.set_xlabel("layer i" if depth else "time step t")
        ax.set_ylabel("‖∂L/∂net_i‖" if depth else "‖∂L/∂h_t‖")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="best", fontsize=8, frameon=False)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = _DROP.sub("", _PROLOG.sub("", buf.getvalue(), count=1))
    svg = re.sub(r'<svg\b([^>]*?)\swidth="[^"]*"\s+height="[^"]*"', r"<svg\1", svg, count=1)
    return prefix_svg_ids(svg.replace("<svg ", '<svg role="img" class="plot" ', 1), prefix)


def _colour(frac: float) -> str:
    """A light-yellow → dark-red ramp; ``frac`` in [0, 1]."""
    lo, hi = (255, 237, 160), (189, 0, 38)
    r, g, b = (round(a + (c - a) * frac) for a, c in zip(lo, hi, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _ref(entry: Mapping[str, Any]) -> float | None:
    numeric = number(entry.get("numeric"))
    return numeric if numeric is not None else number(entry.get("autodiff"))


def heatmap_svg(leaf: Mapping[str, Any]) -> str | None:
    """|hand − reference| of a 2-D leaf's worst entries placed on its grid (others left blank).

    The reference is the numeric value where there is one, else autodiff.  ``None`` when the
    leaf is not 2-D or has no worst entry with both values.
    """
    shape = leaf.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(n, int) and n > 0
                                                                 for n in shape)):
        return None
    cells = []
    for entry in leaf.get("worst") or []:
        hand, ref, index = number(entry.get("hand")), _ref(entry), entry.get("index")
        if hand is None or ref is None or not (isinstance(index, list) and len(index) == 2):
            continue
        cells.append((int(index[0]), int(index[1]), abs(hand - ref)))
    if not cells:
        return None
    rows, cols = shape
    size = max(1.0, min(24.0, _HEAT_SIZE / max(rows, cols)))
    top = max((e for *_, e in cells if math.isfinite(e)), default=1.0) or 1.0
    width, height = cols * size, rows * size
    parts = [f'<svg {_SVG_NS} class="heat" role="img" viewBox="-1 -1 {width + 2:g} {height + 2:g}" '
             f'width="{width + 2:g}" height="{height + 2:g}"><title>worst entries of '
             f'{escape(str(leaf.get("name", "")))} on its {rows}×{cols} grid</title>',
             f'<rect class="grid" x="0" y="0" width="{width:g}" height="{height:g}"/>']
    mark = max(size, 3.0)  # a worst entry stays visible on a large grid
    for i, j, err in cells:
        frac = min(1.0, err / top) if math.isfinite(err) else 1.0
        x, y = j * size + (size - mark) / 2, i * size + (size - mark) / 2
        parts.append(f'<rect x="{x:g}" y="{y:g}" width="{mark:g}" height="{mark:g}" '
                     f'fill="{_colour(frac)}"><title>[{i}, {j}] |hand−ref| = {err:.3g}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)
