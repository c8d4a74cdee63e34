"""Small inline-SVG chart helpers: line charts with thresholds and event markers, grouped bars.

Charts are plain SVG strings meant to sit inside an HTML page: no scripts, no external
resources, every piece of text escaped. Hover details use SVG ``<title>`` elements,
which browsers show as tooltips without any JavaScript.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)
DASHES = ("", "6 3", "2 2", "8 3 2 3")
GRID = "#e6e8eb"
AXIS = "#6b7280"
THRESHOLD = "#c0392b"
LABEL_ROW_PX = 15  # one stacked marker-label row: 11px text with its descenders


def esc(value: object) -> str:
    """Text safe inside HTML and SVG elements and attribute values."""
    return escape(str(value), quote=True)


def color_for(index: int) -> tuple[str, str]:
    """A colour and dash pattern for the ``index``-th series (cycles past the palette)."""
    return PALETTE[index % len(PALETTE)], DASHES[(index // len(PALETTE)) % len(DASHES)]


@dataclass(frozen=True, slots=True)
class Series:
    """One line: a name (escaped when drawn), points ``(x, y)``, a colour and dash."""

    name: str
    points: Sequence[tuple[float, float]]
    color: str
    dash: str = ""
    point_titles: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """A horizontal threshold line at ``y``."""

    y: float
    label: str
    color: str = THRESHOLD


@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical event line at ``x`` with a short label and a hover detail."""

    x: float
    label: str
    detail: str
    color: str


def marker_rows(markers: Sequence[Marker], px_per_x: float, char_px: float = 6.2) -> list[int]:
    """A label row per marker (0 = lowest) so that labels of markers close in ``x``
    stack instead of overlapping: each marker takes the lowest row whose previous label
    ends left of it (label widths estimated at ``char_px`` per character)."""
    ends: list[float] = []
    rows = [0] * len(markers)
    for i in sorted(range(len(markers)), key=lambda i: markers[i].x):
        start = markers[i].x * px_per_x
        row = next((r for r, end in enumerate(ends) if end < start), len(ends))
        if row == len(ends):
            ends.append(0.0)
        ends[row] = start + 14 + char_px * len(markers[i].label)
        rows[i] = row
    return rows


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]`` (1, 2, 2.5 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, value = [], first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def tick_label(value: float) -> str:
    """A compact axis label."""
    return "0" if value == 0 else f"{value:.3g}"


def time_label(seconds: float, span: float) -> str:
    """An axis label for a UTC epoch time, precise enough for the plotted span."""
    moment = datetime.fromtimestamp(seconds, UTC)
    if span < 120:
        return moment.strftime("%H:%M:%S")
    if span < 86_400:
        return moment.strftime("%H:%M")
    return moment.strftime("%m-%d %H:%M")


def _scale(d0: float, d1: float, r0: float, r1: float) -> Callable[[float], float]:
    if d1 == d0:
        d0, d1 = d0 - 0.5, d1 + 0.5
    k = (r1 - r0) / (d1 - d0)
    return lambda v: r0 + (v - d0) * k


def _f(v: float) -> str:
    return f"{v:.1f}"


def empty_chart(chart_id: str, message: str, width: int = 760, height: int = 80) -> str:
    """A placeholder chart that says why there is nothing to draw."""
    return (
        f'<svg id="{esc(chart_id)}" class="chart empty" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">'
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#fafafa" '
        f'stroke="{GRID}"/><text x="{width / 2:.0f}" y="{height / 2 + 4:.0f}" '
        f'text-anchor="middle" fill="{AXIS}">{esc(message)}</text></svg>'
    )


def _open(chart_id: str, label: str, width: int, height: int) -> str:
    return (
        f'<svg id="{esc(chart_id)}" class="chart" role="img" aria-label="{esc(label)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-size="11">'
        f"<title>{esc(label)}</title>"
    )


def line_chart(
    chart_id: str,
    label: str,
    series: Sequence[Series],
    *,
    time_axis: bool,
    rules: Sequence[Rule] = (),
    markers: Sequence[Marker] = (),
    y_max: float | None = None,
    zero_based: bool = True,
    x_label: str = "",
    width: int = 760,
    height: int = 260,
    max_dots: int = 300,
) -> str:
    """Lines over a time (epoch seconds, UTC) or numeric x axis, threshold rules, markers."""
    points = [(x, y) for s in series for x, y in s.points if math.isfinite(y)]
    if not points:
        return empty_chart(chart_id, f"{label}: no data", width)
    left, right, bottom = 52, 130, 40
    xs = [x for x, _ in points] + [m.x for m in markers]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - (30 if time_axis else 1), x1 + (30 if time_axis else 1)
    rows = marker_rows(markers, (width - left - right) / (x1 - x0))
    top = 22 + LABEL_ROW_PX * max(rows, default=0)
    ys = [y for _, y in points] + [r.y for r in rules]
    if zero_based:
        y0 = min(0.0, min(ys))
        y1 = max(ys) * 1.1 if max(ys) > 0 else 1.0
    else:  # zoom on the data: loss curves differ by little compared with their level
        pad = (max(ys) - min(ys)) * 0.15 or abs(max(ys)) * 0.05 or 1.0
        y0, y1 = min(ys) - pad, max(ys) + pad
    if y_max is not None:
        y1 = min(y1, y_max)
    sx = _scale(x0, x1, left, width - right)
    sy = _scale(y0, y1, height - bottom, top)
    out = [_open(chart_id, label, width, height)]
    out.append('<g class="grid">')
    for t in nice_ticks(y0, y1):
        y = sy(t)
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{_f(y)}" y2="{_f(y)}" '
            f'stroke="{GRID}"/><text x="{left - 6}" y="{_f(y + 4)}" text-anchor="end" '
            f'fill="{AXIS}">{esc(tick_label(t))}</text>'
        )
    if time_axis:
        x_ticks = [x0 + (x1 - x0) * i / 5 for i in range(6)]
    else:
        x_ticks = [t for t in nice_ticks(x0, x1) if x0 <= t <= x1]
    for xv in x_ticks:
        text = time_label(xv, x1 - x0) if time_axis else tick_label(xv)
        out.append(
            f'<text x="{_f(sx(xv))}" y="{height - bottom + 16}" text-anchor="middle" '
            f'fill="{AXIS}">{esc(text)}</text>'
        )
    out.append("</g>")
    out.append(
        f'<line x1="{left}" x2="{width - right}" y1="{height - bottom}" '
        f'y2="{height - bottom}" stroke="{AXIS}"/>'
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{height - bottom}" stroke="{AXIS}"/>'
    )
    if x_label:
        out.append(
            f'<text x="{(left + width - right) / 2:.0f}" y="{height - 6}" text-anchor="middle" '
            f'fill="{AXIS}">{esc(x_label)}</text>'
        )
    for m, row in zip(markers, rows, strict=True):
        x = sx(m.x)
        ty = top - 3 - LABEL_ROW_PX * row
        out.append(
            f'<g class="marker"><title>{esc(m.detail)}</title>'
            f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{ty + 3}" y2="{height - bottom}" '
            f'stroke="{m.color}" stroke-width="1.5" stroke-dasharray="4 3"/>'
            f'<path d="M{_f(x - 5)},{ty - 7} L{_f(x + 5)},{ty - 7} L{_f(x)},{ty + 1} Z" '
            f'fill="{m.color}"/><text x="{_f(x + 7)}" y="{ty}" fill="{m.color}">'
            f"{esc(m.label)}</text></g>"
        )
    for r in rules:
        y = sy(min(r.y, y1))
        out.append(
            f'<g class="threshold"><title>{esc(r.label)}</title>'
            f'<line x1="{left}" x2="{width - right}" y1="{_f(y)}" y2="{_f(y)}" '
            f'stroke="{r.color}" stroke-width="1.5" stroke-dasharray="6 4"/>'
            f'<text x="{width - right + 4}" y="{_f(y + 4)}" fill="{r.color}">'
            f"{esc(r.label)}</text></g>"
        )
    for s in series:
        pts = sorted(
            (
                (x, y, s.point_titles[i] if i < len(s.point_titles) else "")
                for i, (x, y) in enumerate(s.points)
            ),
            key=lambda p: p[0],
        )
        pts = [p for p in pts if math.isfinite(p[1])]
        if not pts:
            continue
        coords = " ".join(f"{_f(sx(x))},{_f(sy(min(y, y1)))}" for x, y, _ in pts)
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        out.append(
            f'<g class="series"><title>{esc(s.name)}</title>'
            f'<polyline points="{coords}" fill="none" stroke="{s.color}" '
            f'stroke-width="1.8"{dash}/>'
        )
        if len(pts) <= max_dots:
            for x, y, title in pts:
                out.append(
                    f'<circle cx="{_f(sx(x))}" cy="{_f(sy(min(y, y1)))}" r="2.8" '
                    f'fill="{s.color}"><title>{esc(title or s.name)}</title></circle>'
                )
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def bar_chart(
    chart_id: str,
    label: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float]]],
    *,
    value_label: Callable[[float], str] = tick_label,
    height: int = 230,
    max_width: int = 760,
) -> str:
    """Grouped vertical bars: one group per category, one bar per ``(name, colour, values)``."""
    values = [v for _, _, vals in series for v in vals if math.isfinite(v)]
    if not categories or not values:
        return empty_chart(chart_id, f"{label}: no data", max_width)
    n_series = max(len(series), 1)
    bar_w = 11 if len(categories) > 12 else 16
    group_w = n_series * bar_w + 10
    rotate = len(categories) > 4 or any(len(c) > 9 for c in categories)
    left, right, top = 48, 12, 12
    bottom = 74 if rotate else 30
    width = max(300, min(max_width, left + right + group_w * len(categories)))
    group_w = (width - left - right) / len(categories)
    bar_w = min(bar_w * 2, (group_w - 8) / n_series)
    y1 = max(max(values) * 1.1, 1e-9)
    sy = _scale(0.0, y1, height - bottom, top)
    out = [_open(chart_id, label, width, height)]
    for t in nice_ticks(0.0, y1, 4):
        y = sy(t)
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{_f(y)}" y2="{_f(y)}" '
            f'stroke="{GRID}"/><text x="{left - 6}" y="{_f(y + 4)}" text-anchor="end" '
            f'fill="{AXIS}">{esc(value_label(t))}</text>'
        )
    for i, category in enumerate(categories):
        gx = left + i * group_w + (group_w - n_series * bar_w) / 2
        for j, (name, color, vals) in enumerate(series):
            v = vals[i] if i < len(vals) else math.nan
            if not math.isfinite(v):
                continue
            y = sy(max(v, 0.0))
            out.append(
                f'<rect x="{_f(gx + j * bar_w)}" y="{_f(y)}" width="{_f(max(bar_w - 1, 1))}" '
                f'height="{_f(max(height - bottom - y, 0.0))}" fill="{color}">'
                f"<title>{esc(category)}: {esc(name)} {esc(value_label(v))}</title></rect>"
            )
        cx = left + (i + 0.5) * group_w
        short = category if len(category) <= 18 else category[:17] + "…"
        ty = height - bottom + 13
        transform = f' transform="rotate(-35 {_f(cx)} {ty})"' if rotate else ""
        anchor = "end" if rotate else "middle"
        out.append(
            f'<text x="{_f(cx)}" y="{ty}" text-anchor="{anchor}" fill="{AXIS}"{transform}>'
            f"<title>{esc(category)}</title>{esc(short)}</text>"
        )
    out.append(
        f'<line x1="{left}" x2="{width - right}" y1="{height - bottom}" '
        f'y2="{height - bottom}" stroke="{AXIS}"/></svg>'
    )
    return "".join(out)


def legend(items: Sequence[tuple[str, str, str]]) -> str:
    """An HTML legend: ``(name, colour, dash)`` per entry, names escaped."""
    parts = ['<ul class="legend">']
    for name, color, dash in items:
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<li><svg width="22" height="10" aria-hidden="true">'
            f'<line x1="1" x2="21" y1="5" y2="5" stroke="{color}" stroke-width="3"{dash_attr}/>'
            f"</svg>{esc(name)}</li>"
        )
    parts.append("</ul>")
    return "".join(parts)
