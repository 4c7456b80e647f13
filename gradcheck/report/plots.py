"""Inline SVG figures of the report: gradient-flow plots (matplotlib), the gradient-flow study's
slope and truncation plots (matplotlib), and error heat maps.

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

__all__ = ["MapLayout", "error_map_layout", "error_map_svg", "flow_svg", "heatmap_svg", "number",
           "prefix_svg_ids", "step_errors", "step_errors_svg", "study_slope_svg", "study_spectrum_svg",
           "truncation_svg"]

_ID = re.compile(r'\bid="([^"]+)"')
_URL = re.compile(r"url\(#([^)\s]+)\)")
_HREF = re.compile(r'((?:xlink:)?href)="#([^"]+)"')
_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.DOTALL)
# matplotlib's <metadata> is dead weight, and its <style> rule "*{...}" would apply to the whole page
_DROP = re.compile(r"\s*<metadata>.*?</metadata>|\s*<style[^>]*>.*?</style>", re.DOTALL)
_HEAT_SIZE = 320  # the largest side of a heat map, in px
_SVG_NS = 'xmlns="http://www.w3.org/2000/svg"'
#: rc settings of every matplotlib figure (text stays text in the SVG).
_RC: dict[str, Any] = {"svg.fonttype": "none", "font.size": 9}
#: (marker, colour) of the study's families in the slope plot; others get the last entry.
_FAMILY_STYLE = {("rnn", "tanh"): ("o", "C0"), ("rnn", "sigmoid"): ("s", "C1"),
                 ("rnn", "relu"): ("^", "C2"), ("mlp", "sigmoid"): ("D", "C3"), ("mlp", "tanh"): ("P", "C5"),
                 ("mlp", "relu"): ("X", "C6"), (): ("v", "C4")}
#: The bottom of the truncation plot: smaller relative errors are round-off, below the float64
#: resolution of g.
_TRUNCATION_FLOOR = 1e-17
_TRUNCATION_STYLE = {"tanh": ("Blues", "-"), "sigmoid": ("Oranges", "--"), "relu": ("Greens", "-."),
                     "": ("Purples", ":")}


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
_MATHDEFAULT = re.compile(r"^\$\\mathdefault\{(.*)\}\$$")
_POWER = re.compile(r"\^\{(-?\d+)\}")


def _plain_tick(label: str) -> str:
    """A log-axis tick label of matplotlib's (``$\\mathdefault{2\\times10^{-3}}$``) as plain text
    (``2×10⁻³``): the same label without mathtext, whose layout was most of a figure's time."""
    m = _MATHDEFAULT.match(label)
    if not m:
        return label
    body = _POWER.sub(lambda p: p.group(1).translate(_SUPERSCRIPT), m.group(1).replace("\\times", "×"))
    return body.replace("-", "−")


def _plain_log_ticks(axis: Any) -> None:
    """Label a log axis as matplotlib does (the decades; the minor ticks too on a short range) in
    plain text instead of mathtext."""
    from matplotlib.ticker import LogFormatterSciNotation

    class Plain(LogFormatterSciNotation):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return _plain_tick(super().__call__(x, pos))

    axis.set_major_formatter(Plain())
    axis.set_minor_formatter(Plain(labelOnlyBase=False))


def _rc(prefix: str) -> Any:
    """The rc settings of one figure; ``prefix`` salts the hashes of its ids."""
    return {**_RC, "svg.hashsalt": prefix}


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


def _svg(fig: Any, prefix: str) -> str:
    """A matplotlib figure as an inline ``<svg>`` fragment whose ids all start with ``prefix``."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = _DROP.sub("", _PROLOG.sub("", buf.getvalue(), count=1))
    svg = re.sub(r'<svg\b([^>]*?)\swidth="[^"]*"\s+height="[^"]*"', r"<svg\1", svg, count=1)
    return prefix_svg_ids(svg.replace("<svg ", '<svg role="img" class="plot" ', 1), prefix)


def _data_range(data: Sequence[float], bound: Sequence[float]) -> tuple[float, float]:
    """The log-axis range of the norms, stretched to the bound but by no more than ×1000 beyond the
    data: a bound that grows far above the norms (η > 1) leaves the plot instead of flattening it."""
    shown = [v for v in data if math.isfinite(v) and v > 0]
    lo, hi = min(shown), max(shown)
    over = [v for v in bound if math.isfinite(v) and v > 0]
    top = min(max(over, default=hi), hi * 1e3)
    bottom = max(min(over, default=lo), lo / 1e3)
    return min(lo, bottom) / 2, max(hi, top) * 2


def flow_svg(flow: Mapping[str, Any], prefix: str, *, size: tuple[float, float] = (5.6, 3.0)) -> str | None:
    """The norms of ∂L/∂h_t against t (log scale) with the bound η^(T−1−t), as inline SVG.

    Args:
        flow: a :meth:`gradcheck.FlowResult.to_dict` record.
        prefix: starts every id the SVG defines (unique per page).
        size: the figure's (width, height) in inches.

    Returns ``None`` when the flow has no positive finite norm to plot.
    """
    hand, auto = _series(flow.get("hand_norms")), _series(flow.get("autodiff_norms"))
    norms = hand or auto
    if not any(math.isfinite(v) and v > 0 for v in norms):
        return None
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    depth = flow.get("axis") == "depth"
    with rc_context(_rc(prefix)):
        fig = Figure(figsize=size)
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
            ax.set_ylim(*_data_range(hand + auto, bound))
        if depth:  # layers are whole numbers: no 1.5th layer on the axis
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _plain_log_ticks(ax.yaxis)
        ax.set_xlabel("layer i" if depth else "time step t")
        ax.set_ylabel("‖∂L/∂net_i‖" if depth else "‖∂L/∂h_t‖")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="best", fontsize=8, frameon=False)
        fig.tight_layout()
        return _svg(fig, prefix)


def _text(value: Any) -> str:
    """A document string as matplotlib text: a ``$`` is a dollar sign, never the start of maths."""
    return str(value).replace("$", r"\$")


def _point_label(row: Mapping[str, Any]) -> str:
    """The part of a study label that tells apart the models of one family (``σ=0.5``, ``depth 3``)."""
    label = _text(row.get("label", ""))
    return label.split(" ", 1)[1] if " " in label else label


#: Where a point's label may go, tried in order: (dx, dy) in points from the point, and the
#: label's alignment there.
_LABEL_SPOTS = [(dx * sx, dy, ha) for dy in (3, -9, 12, -18, 21, -27, 30, -36)
                for dx, sx, ha in ((4, 1, "left"), (4, -1, "right"))] + [(0, 8, "center"), (0, -14, "center")]


def _place_labels(fig: Any, ax: Any, labels: Sequence[tuple[str, float, float, str]], *,
                  avoid: Sequence[Any] = ()) -> None:
    """Annotate points with labels that overlap neither each other, nor any point, nor the
    ``avoid`` artists (a legend), nor the axes' edge: each label goes to the first free spot of
    :data:`_LABEL_SPOTS` (measured by rendering), else to the least crowded one."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    renderer = FigureCanvasAgg(fig).get_renderer()  # type: ignore[no-untyped-call]
    frame = ax.get_window_extent(renderer)
    scale = fig.dpi / 72.0
    taken = [a.get_window_extent(renderer) for a in avoid]
    for _, x, y, _ in labels:
        px, py = ax.transData.transform((x, y))
        taken.append(Bbox.from_extents(px - 4 * scale, py - 4 * scale, px + 4 * scale, py + 4 * scale))
    for text, x, y, colour in labels:
        best: tuple[float, Any] | None = None
        for dx, dy, ha in _LABEL_SPOTS:
            note = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7,
                               color=colour, ha=ha, va="bottom")
            box = note.get_window_extent(renderer).padded(1.0 * scale)  # a point of air around it
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            crowd = sum(_overlap(box, other) for other in taken) + (0.0 if inside else box.width * box.height)
            if best is None or crowd < best[0]:
                if best is not None:
                    best[1].remove()
                best = (crowd, note)
            else:
                note.remove()
            if crowd == 0:
                break
        if best is not None:
            taken.append(best[1].get_window_extent(renderer))


def _overlap(a: Any, b: Any) -> float:
    """The area two boxes share (0 when apart)."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def study_slope_svg(rows: Sequence[Mapping[str, Any]], prefix: str, *,
                    threshold: float | None = None) -> str | None:
    """The study's fitted slope (± stderr) against log η, with the line slope = log η, as inline SVG.

    Pascanu's bound ``‖∂L/∂h_t‖ ≤ η^(T−1−t) ‖∂L/∂h_{T−1}‖`` puts every norm under a line of
    slope log η, so the points belong on or below the diagonal.  Rows without a finite log η
    (gated cells) are left out; ``threshold`` shades the band ``|slope| ≤ threshold`` (stable).

    Returns ``None`` when no row has both a finite slope and a finite log η.
    """
    points = [(r, number(r.get("log_eta")), number(r.get("slope")), number(r.get("slope_stderr")))
              for r in rows]
    points = [p for p in points if p[1] is not None and p[2] is not None
              and math.isfinite(p[1]) and math.isfinite(p[2])]
    if not points:
        return None
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    xs = [p[1] or 0.0 for p in points] + [p[2] or 0.0 for p in points]
    lo, hi = min(xs) - 0.3, max(xs) + 0.3
    with rc_context(_rc(prefix)):
        fig = Figure(figsize=(6.4, 4.0))
        ax = fig.add_subplot()
        ax.fill_between([lo, hi], [lo, hi], [hi, hi], color="C3", alpha=0.07, lw=0,
                        label="above the bound")
        ax.plot([lo, hi], [lo, hi], "-", color="0.3", lw=1, label="slope = log η (Pascanu's bound)")
        if threshold is not None and math.isfinite(threshold):
            ax.axhspan(-threshold, threshold, color="0.5", alpha=0.15, lw=0, label="stable band")
        seen: set[tuple[str, ...]] = set()
        labels: list[tuple[str, float, float, str]] = []
        for row, x, y, err in points:
            family = (str(row.get("kind", "")), str(row.get("activation", "")))
            marker, colour = _FAMILY_STYLE.get(family, _FAMILY_STYLE[()])
            name = _text(f"{family[1]} {family[0]}".strip())
            bar = [err] if err is not None and math.isfinite(err) else None
            ax.errorbar([float(x or 0.0)], [float(y or 0.0)], yerr=bar,
                        fmt=marker, color=colour, ms=5, capsize=2, label=None if family in seen else name)
            seen.add(family)
            labels.append((_point_label(row), float(x or 0.0), float(y or 0.0), colour))
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("log η  (η = σ_max·γ)")
        ax.set_ylabel("fitted slope of log‖∂L/∂h_t‖ per step back")
        ax.grid(True, alpha=0.3)
        legend = ax.legend(loc="upper left", fontsize=7, frameon=False)
        fig.tight_layout()
        _place_labels(fig, ax, labels, avoid=[legend])
        return _svg(fig, prefix)


def _singular_values(row: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    """The positive finite top and bottom singular values of a study row's end-to-end Jacobian."""
    flow = row.get("flow")
    sp = flow.get("spectrum") if isinstance(flow, Mapping) else None
    if not isinstance(sp, Mapping):
        return [], []

    def shown(key: str) -> list[float]:
        return [v for v in _series(sp.get(key)) if math.isfinite(v) and v > 0]

    return shown("top"), shown("bottom")


def study_spectrum_svg(rows: Sequence[Mapping[str, Any]], prefix: str) -> str | None:
    """The singular values of every study model's end-to-end Jacobian (∂h_{T−1}/∂h_{−1} through
    time, ∂y/∂x through a stack) on a log axis: the top ones filled, the bottom ones open, a bar
    between the extremes, and the line σ = 1 (dynamical isometry: every σ near 1; Pennington et
    al. 2017).  Returns ``None`` when no row has a positive singular value."""
    columns = [(row, *_singular_values(row)) for row in rows]
    columns = [c for c in columns if c[1] or c[2]]
    if not columns:
        return None
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    with rc_context(_rc(prefix)):
        fig = Figure(figsize=(8.4, 4.0))
        ax = fig.add_subplot()
        ax.axhline(1.0, color="0.3", lw=1, ls="--", label="σ = 1 (isometry)")
        for i, (row, top, bottom) in enumerate(columns):
            family = (str(row.get("kind", "")), str(row.get("activation", "")))
            _, colour = _FAMILY_STYLE.get(family, _FAMILY_STYLE[()])
            every = top + bottom
            ax.semilogy([i, i], [min(every), max(every)], "-", color=colour, lw=1, alpha=0.5)
            ax.semilogy([i] * len(top), top, "o", color=colour, ms=4,
                        label=None if any(c[1] for c in columns[:i]) else "top σ")
            ax.semilogy([i] * len(bottom), bottom, "o", mfc="none", color=colour, ms=4,
                        label=None if any(c[2] for c in columns[:i]) else "bottom σ")
        _plain_log_ticks(ax.yaxis)
        ax.set_xticks(range(len(columns)), [_text(c[0].get("label", "")) for c in columns],
                      rotation=60, ha="right", fontsize=7)
        ax.set_xlim(-0.6, len(columns) - 0.4)
        ax.set_ylabel("singular values of the end-to-end Jacobian")
        ax.grid(True, which="major", axis="y", alpha=0.3)
        ax.legend(loc="best", fontsize=7, frameon=False)
        fig.tight_layout()
        return _svg(fig, prefix)


def truncation_svg(rows: Sequence[Mapping[str, Any]], prefix: str, *,
                   tolerance: float | None = None) -> str | None:
    """The truncation-bias curves ‖g_τ − g‖/‖g‖ against τ (log scale), one line per recurrent row.

    ``rows`` are study rows (each with its ``flow``); zero errors (τ ≥ T is exact) are left off
    the log axis; ``tolerance`` draws the 1 % line of ``min_truncation``.  Returns ``None`` when
    no row has a positive error to plot.
    """
    curves = []
    for row in rows:
        flow = row.get("flow")
        errs = _series(flow.get("truncation_errors")) if isinstance(flow, Mapping) else []
        shown = [v if math.isfinite(v) and v > 0 else math.nan for v in errs]
        if any(math.isfinite(v) for v in shown):
            curves.append((row, shown))
    if not curves:
        return None
    from matplotlib import colormaps, rc_context
    from matplotlib.figure import Figure

    with rc_context(_rc(prefix)):
        fig = Figure(figsize=(8.4, 4.0))
        ax = fig.add_subplot()
        groups: dict[str, list[int]] = {}
        for i, (row, _) in enumerate(curves):
            act = str(row.get("activation", "")) if row.get("kind") == "rnn" else ""
            groups.setdefault(act if act in _TRUNCATION_STYLE else "", []).append(i)
        for act, members in groups.items():
            cmap, style = _TRUNCATION_STYLE[act]
            for n, i in enumerate(members):
                row, shown = curves[i]
                shade = colormaps[cmap](0.45 + 0.5 * n / max(len(members) - 1, 1))
                ax.semilogy(range(1, len(shown) + 1), shown, style, color=shade, lw=1.4,
                            label=_text(row.get("label", "")))
        if tolerance is not None and math.isfinite(tolerance) and tolerance > 0:
            ax.axhline(tolerance, color="0.3", lw=1, ls=(0, (1, 2)), label=f"{tolerance:.0%} tolerance")
        low = min(v for _, shown in curves for v in shown if math.isfinite(v))
        ax.set_ylim(bottom=max(low / 2, _TRUNCATION_FLOOR))
        _plain_log_ticks(ax.yaxis)
        ax.set_xlabel("truncation τ (cell steps back-propagated)")
        ax.set_ylabel("‖g_τ − g‖ / ‖g‖")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
        fig.tight_layout()
        return _svg(fig, prefix)


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


#: An error map of at most this many entries is drawn cell by cell, each with its tooltip;
#: a larger one is one embedded PNG of a pixel per entry (a few kB even at 4,096 entries).
_MAP_CELLS = 256
_GREY = (184, 190, 198)
_BLANK = (246, 248, 250)  # past the last entry of a wrapped map


def _png(pixels: Sequence[Sequence[tuple[int, int, int]]]) -> str:
    """A base64 PNG (8-bit RGB) of rows of pixels: a data URI's payload."""
    import base64
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = len(pixels), len(pixels[0])
    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in pixels)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    return base64.b64encode(png).decode("ascii")


def _rgb(frac: float) -> tuple[int, int, int]:
    lo, hi = (255, 237, 160), (189, 0, 38)
    r, g, b = (round(a + (c - a) * frac) for a, c in zip(lo, hi, strict=True))
    return r, g, b


def _map_values(leaf: Mapping[str, Any]) -> tuple[list[int], list[float | None]] | None:
    """A leaf's shape and its error map's values (``None`` where not measured), when it has one
    that matches its shape."""
    em, shape = leaf.get("error_map"), leaf.get("shape")
    if not isinstance(em, Mapping) or not isinstance(shape, list):
        return None
    values = em.get("values")
    size = math.prod(int(n) for n in shape) if shape else 1
    if not isinstance(values, list) or len(values) != size or size == 0:
        return None
    out = [number(v) for v in values]
    return [int(n) for n in shape], [v if v is not None and math.isfinite(v) else None for v in out]


def _log_frac(v: float, lo: float, hi: float) -> float:
    if v <= lo or hi <= lo:
        return 0.0
    return min(1.0, math.log(v / lo) / math.log(hi / lo))


#: A 1-D error map longer than this (or a grid too large to draw at 2 px a cell) is wrapped in
#: rows of this many entries.
_WRAP = 64
_MAP_SIDE = 480  # the largest side of an error map, in px, before cells shrink to 2 px
#: A leaf of 3 axes or more is drawn as small multiples (one grid per index of an axis) when
#: that axis has at most this many indices.
_MAX_PANELS = 32
_PANEL_SIDE = 160  # the largest side of one small multiple, in px
_PANEL_GAP = 10  # px between small multiples
_LABEL_H = 12  # px above a small multiple for its label


class MapLayout:
    """How an error map is drawn: ``panels`` grids of ``rows × cols`` cells each, ``axis`` the
    axis of the leaf that tells the panels apart (``None``: one panel), ``note`` what a row,
    column and panel are, in words."""

    def __init__(self, shape: Sequence[int], time_axis: int | None = None) -> None:
        self.shape = [int(n) for n in shape]
        self.n = math.prod(self.shape) if self.shape else 1
        self.axis: int | None = None
        ndim = len(self.shape)
        self.time_axis = _norm_axis(time_axis, ndim)
        if ndim <= 1:
            self._flat("one row" if self.n <= _WRAP else None)
            return
        if ndim == 2:
            self.panels, self.rows, self.cols = 1, self.shape[0], self.shape[1]
            self.note = "rows down (axis 0), columns across (axis 1)"
            if max(self.rows, self.cols) * 2 > 1.4 * _MAP_SIDE:
                self._flat(None)
            return
        axis = self.time_axis if self.time_axis is not None else 0
        rest = [a for a in range(ndim) if a != axis]
        cols = self.shape[rest[-1]]
        rows = self.n // max(self.shape[axis] * cols, 1)
        if self.shape[axis] <= _MAX_PANELS and max(rows, cols) * 2 <= 1.4 * _PANEL_SIDE:
            self.axis, self.panels, self.rows, self.cols = axis, self.shape[axis], rows, cols
            what = "time step" if axis == self.time_axis else "index"
            down = (f"axis {rest[0]}" if len(rest) == 2
                    else "axes " + ", ".join(map(str, rest[:-1])) + " flattened in C order")
            self.note = (f"one small grid per {what} (axis {axis}); in each, {down} down and "
                         f"axis {rest[-1]} across")
            return
        self.panels, self.cols = 1, self.shape[-1]
        self.rows = self.n // max(self.cols, 1)
        lead = "×".join(map(str, self.shape[:-1]))
        self.note = f"the last axis across, the other axes ({lead}) flattened down in C order"
        if max(self.rows, self.cols) * 2 > 1.4 * _MAP_SIDE:
            self._flat(None)

    def _flat(self, note: str | None) -> None:
        self.panels = 1
        if note is not None:
            self.rows, self.cols, self.note = 1, self.n, note
        else:
            self.rows, self.cols = -(-self.n // _WRAP), _WRAP
            self.note = f"row-major, wrapped in rows of {_WRAP} entries"

    def place(self, k: int) -> tuple[int, int, int]:
        """``(panel, row, column)`` of the ``k``-th entry (row-major) of the leaf."""
        if self.axis is None:
            return (0, *divmod(k, self.cols))
        index = _unravel(k, self.shape)
        rest = [i for a, i in enumerate(index) if a != self.axis]
        rest_shape = [n for a, n in enumerate(self.shape) if a != self.axis]
        row = 0
        for i, n in zip(rest[:-1], rest_shape[:-1], strict=True):
            row = row * n + i
        return index[self.axis], row, rest[-1]


def error_map_layout(shape: Sequence[int], time_axis: int | None = None) -> MapLayout:
    """How an error map of ``shape`` is drawn (see :class:`MapLayout`).

    A 1-D leaf is one row (wrapped in rows of 64 entries when longer), a 2-D leaf its own grid,
    a leaf of more axes one small grid per index of its time axis (axis 0 when it has none), or,
    with too many of those, its last axis across and the others flattened down in C order; a
    grid that would not fit at 2 px a cell is wrapped as the flat row-major list is.
    """
    return MapLayout(shape, time_axis)


def error_map_svg(leaf: Mapping[str, Any], prefix: str) -> str | None:
    """Every entry's ``|hand − reference| / max|reference|`` of a failing leaf on its grid, on a
    log colour scale with its legend; entries not measured are grey, exact agreement white.

    The layout is :func:`error_map_layout`'s.  Up to 256 entries are drawn cell by cell, each
    with its index and value as a tooltip; more are embedded PNGs of a pixel per entry.
    ``None`` when the leaf has no error map (a passing leaf, more than 4,096 entries, an old
    document) or one that does not match its shape.
    """
    got = _map_values(leaf)
    if got is None:
        return None
    shape, values = got
    layout = error_map_layout(shape, _norm_axis(leaf.get("time_axis"), len(shape)))
    positive = [v for v in values if v is not None and v > 0]
    hi = max(positive, default=1.0)
    lo = min(max(min(positive, default=hi), hi * 1e-12), hi / 10)
    side = _PANEL_SIDE if layout.panels > 1 else _MAP_SIDE
    size = max(2.0, min(24.0, side / max(layout.rows, layout.cols)))
    pw, ph = layout.cols * size, layout.rows * size
    top = _LABEL_H if layout.panels > 1 else 0.0
    per_row = max(1, min(layout.panels, int((_MAP_SIDE + 160 + _PANEL_GAP) // (pw + _PANEL_GAP))))
    grid_rows = -(-layout.panels // per_row)
    origins = [((p % per_row) * (pw + _PANEL_GAP), (p // per_row) * (ph + top + _PANEL_GAP) + top)
               for p in range(layout.panels)]
    width = per_row * pw + (per_row - 1) * _PANEL_GAP
    height = grid_rows * (ph + top) + (grid_rows - 1) * _PANEL_GAP
    legend_w = max(width, 260.0)
    grad_id = f"{prefix}ramp"
    name = escape(str(leaf.get("name", "")))
    flat = "×".join(map(str, shape)) or "scalar"
    parts = [f'<svg {_SVG_NS} class="heat errmap" role="img" viewBox="-1 -1 {legend_w + 2:g} '
             f'{height + 40:g}" width="{legend_w + 2:g}" height="{height + 40:g}"><title>relative '
             f'error of every entry of {name} ({flat}), log colour scale</title>',
             f'<defs><linearGradient id="{grad_id}">'
             f'<stop offset="0" stop-color="{_colour(0.0)}"/><stop offset="1" stop-color="{_colour(1.0)}"/>'
             '</linearGradient></defs>']
    for p, (x0, y0) in enumerate(origins):
        if layout.panels > 1:
            label = f"t = {p}" if layout.axis == layout.time_axis else f"[{p}]"
            parts.append(f'<text class="panel" x="{x0:g}" y="{y0 - 3:g}" font-size="9">{label}</text>')
        parts.append(f'<rect class="grid" x="{x0:g}" y="{y0:g}" width="{pw:g}" height="{ph:g}"/>')
    if len(values) <= _MAP_CELLS:
        for k, v in enumerate(values):
            p, i, j = layout.place(k)
            x0, y0 = origins[p]
            if v is None:
                fill, cls, text = "#b8bec6", ' class="unmeasured"', "not measured"
            else:
                fill, cls, text = _colour(_log_frac(v, lo, hi)) if v > 0 else "#ffffff", "", f"{v:.3g}"
            parts.append(f'<rect{cls} x="{x0 + j * size:g}" y="{y0 + i * size:g}" width="{size:g}" '
                         f'height="{size:g}" fill="{fill}"><title>{_index_text(k, shape)}: {text}'
                         '</title></rect>')
    else:
        canvases = [[[_BLANK] * layout.cols for _ in range(layout.rows)] for _ in range(layout.panels)]
        for k, v in enumerate(values):
            p, i, j = layout.place(k)
            canvases[p][i][j] = (_GREY if v is None else _rgb(_log_frac(v, lo, hi)) if v > 0
                                 else (255, 255, 255))
        for (x0, y0), pixels in zip(origins, canvases, strict=True):
            parts.append(f'<image class="pixels" x="{x0:g}" y="{y0:g}" width="{pw:g}" height="{ph:g}" '
                         f'preserveAspectRatio="none" style="image-rendering: pixelated" '
                         f'href="data:image/png;base64,{_png(pixels)}"><title>{layout.rows}×{layout.cols} '
                         'entries, one pixel each</title></image>')
    y0 = height + 8
    bar = legend_w * 0.6
    parts.append(f'<rect x="0" y="{y0:g}" width="{bar:g}" height="8" fill="url(#{grad_id})"/>')
    parts.append(f'<text x="0" y="{y0 + 20:g}" font-size="9">{lo:.1e}</text>'
                 f'<text x="{bar / 2:g}" y="{y0 + 20:g}" font-size="9" text-anchor="middle">log scale</text>'
                 f'<text x="{bar:g}" y="{y0 + 20:g}" font-size="9" text-anchor="end">{hi:.1e}</text>'
                 f'<rect x="{legend_w * 0.65:g}" y="{y0:g}" width="8" height="8" fill="#b8bec6"/>'
                 f'<text x="{legend_w * 0.65 + 11:g}" y="{y0 + 8:g}" font-size="9">not measured</text>'
                 f'<rect x="{legend_w * 0.65:g}" y="{y0 + 12:g}" width="8" height="8" fill="#ffffff" '
                 'stroke="#b8bec6"/>'
                 f'<text x="{legend_w * 0.65 + 11:g}" y="{y0 + 20:g}" font-size="9">exact (0)</text>')
    parts.append("</svg>")
    return "".join(parts)


def _norm_axis(axis: Any, ndim: int) -> int | None:
    """``axis`` as a non-negative axis of an ``ndim``-array, or ``None`` when it is not one."""
    if isinstance(axis, bool) or not isinstance(axis, int) or not -ndim <= axis < ndim:
        return None
    return axis % ndim


def _unravel(k: int, shape: Sequence[int]) -> tuple[int, ...]:
    index = []
    for n in reversed(shape):
        k, r = divmod(k, n)
        index.append(r)
    return tuple(reversed(index))


def _index_text(k: int, shape: Sequence[int]) -> str:
    return "[" + ", ".join(map(str, _unravel(k, shape))) + "]"


def step_errors(leaf: Mapping[str, Any]) -> list[float | None] | None:
    """The largest relative error at each step along the leaf's time axis (``None`` where no
    entry of that step was measured); ``None`` for a leaf that is not a sequence with a map."""
    got = _map_values(leaf)
    axis = leaf.get("time_axis")
    if got is None or not isinstance(axis, int) or isinstance(axis, bool):
        return None
    shape, values = got
    if len(shape) < 2 or not -len(shape) <= axis < len(shape):
        return None
    axis %= len(shape)
    out: list[float | None] = [None] * shape[axis]
    for k, v in enumerate(values):
        if v is None:
            continue
        t = _unravel(k, shape)[axis]
        out[t] = v if out[t] is None else max(out[t] or 0.0, v)
    return out


def step_errors_svg(leaf: Mapping[str, Any], prefix: str) -> str | None:
    """The error by time step of a failing sequence leaf (log scale), as inline SVG."""
    per = step_errors(leaf)
    if per is None or not any(v is not None and v > 0 for v in per):
        return None
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    floor = min(v for v in per if v is not None and v > 0) / 10
    with rc_context(_rc(prefix)):
        fig = Figure(figsize=(4.6, 2.2))
        ax = fig.add_subplot()
        steps = [t for t, v in enumerate(per) if v is not None]
        ax.semilogy(steps, [max(per[t] or 0.0, floor) for t in steps], "o-", ms=3, lw=1.2, color="C3")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"time step (axis {leaf.get('time_axis')})")
        ax.set_ylabel("max |hand − ref| / max|ref|")
        ax.grid(True, which="major", alpha=0.3)
        fig.tight_layout()
        return _svg(fig, prefix)
