"""Server-rendered SVG charts (no JavaScript, nothing fetched): bars over time with a
labelled value axis and unit, lines over time on one or two value axes with event
markers, and a gauge bar. Output is safe HTML."""
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe


def _nice_ceiling(value: Decimal) -> Decimal:
    """The smallest 1, 2 or 5 × 10^n at or above `value`, for a readable axis."""
    if value <= 0:
        return Decimal(1)
    exponent = value.adjusted()
    for step in (1, 2, 5, 10):
        candidate = Decimal(step).scaleb(exponent)
        if candidate >= value:
            return candidate
    return Decimal(10).scaleb(exponent)  # pragma: no cover


def _label(value: Decimal) -> str:
    value = value.normalize()
    if value >= 1_000_000:
        return f"{(value / 1_000_000).normalize():f}M"
    if value >= 1_000:
        return f"{(value / 1_000).normalize():f}k"
    return f"{value:f}"


def bar_chart(points: list[tuple[datetime, Decimal]], *, unit: str, title: str,
              time_format: str = "%d %b", width: int = 640, height: int = 220) -> str:
    """A bar chart of (time, value) points with a value axis in `unit`."""
    left, right, top, bottom = 56, 12, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_ceiling(max((v for _, v in points), default=Decimal(0)))
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{left}" y="16" class="chart-title">{escape(title)} ({escape(unit)})</text>']
    for i in range(5):
        fraction = Decimal(i) / 4
        y = top + plot_h - float(fraction) * plot_h
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">'
                     f'{escape(_label(peak * fraction))}</text>')
    if not points:
        parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" class="axis" '
                     'text-anchor="middle">No usage in this range yet</text>')
    slot = plot_w / max(len(points), 1)
    label_every = max(1, len(points) // 8)
    for index, (at, value) in enumerate(points):
        h = float(value / peak) * plot_h if peak else 0
        x = left + index * slot
        parts.append(f'<rect x="{x + slot * 0.15:.1f}" y="{top + plot_h - h:.1f}" '
                     f'width="{slot * 0.7:.1f}" height="{h:.1f}" class="bar">'
                     f'<title>{escape(at.strftime(time_format))}: {escape(_label(value))} '
                     f'{escape(unit)}</title></rect>')
        if index % label_every == 0:
            parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - bottom + 16}" class="axis" '
                         f'text-anchor="middle">{escape(at.strftime(time_format))}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # nosec B308 B703 - every interpolated value above is escape()d or a number


def gauge(used: Decimal, included: Decimal | None, unit: str) -> str:
    """A horizontal gauge of used against included; red past 100%, amber past 80%."""
    if included is None:
        return format_html('<div class="gauge unlimited"><span>{} {} used · unlimited</span></div>',
                           _label(used), unit)
    percent = Decimal(100) if not included else min(used / included * 100, Decimal(100))
    state = "bad" if included and used > included else "warn" if percent >= 80 else "ok"
    shown = (used / included * 100) if included else Decimal(0)
    return format_html(
        '<div class="gauge {}"><div class="fill" style="width: {}%"></div>'
        '<span>{} of {} {} ({}%)</span></div>',
        state, f"{percent:.1f}", _label(used), _label(included), unit, f"{shown:.0f}")


@dataclass(frozen=True)
class Series:
    """One line of a time chart: (time, value or None for a gap) points on the left or
    right value axis, drawn as a step line (a count that changes at instants, like
    nodes) or a straight line (a sampled level, like CPU)."""

    name: str
    points: list[tuple[datetime, float | Decimal | None]]
    axis: str = "left"  # "left" or "right"
    step: bool = False
    css: str = "line"


@dataclass(frozen=True)
class Marker:
    """An instant to mark across the plot (a scaling event), with its tooltip."""

    at: datetime
    label: str
    css: str = "marker"


def _axis_top(values: list[float], fixed: float | None) -> float:
    if fixed is not None:
        return fixed
    return float(_nice_ceiling(Decimal(str(max(values, default=0.0)))))


def _axis_label(value: float) -> str:
    return _label(Decimal(str(round(value, 2))))


def time_chart(series: list[Series], *, title: str, left_unit: str, right_unit: str | None = None,
               markers: list[Marker] = (), left_max: float | None = None,
               right_max: float | None = None, time_format: str = "%d %b %H:%M",
               empty_text: str = "No data in this range yet", width: int = 720,
               height: int = 260) -> str:
    """Lines over time with a labelled value axis on the left (in `left_unit`) and,
    optionally, one on the right (in `right_unit`), time labels below, a legend, and
    vertical markers for events. Axes start at zero; `left_max`/`right_max` fix their top
    (e.g. 100 for percentages)."""
    left, right, top, bottom = 56, 56 if right_unit else 16, 44, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    times = [t for s in series for t, _ in s.points] + [m.at for m in markers]
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>']
    tops = {}
    for axis, unit, fixed in (("left", left_unit, left_max), ("right", right_unit, right_max)):
        if unit is None:
            continue
        values = [float(v) for s in series if s.axis == axis for _, v in s.points if v is not None]
        tops[axis] = _axis_top(values, fixed)
        x_text, anchor = (left - 6, "end") if axis == "left" else (width - right + 6, "start")
        parts.append(f'<text x="{x_text}" y="{top - 10}" class="axis" text-anchor="{anchor}">'
                     f'{escape(unit)}</text>')
        for i in range(5):
            y = top + plot_h - i / 4 * plot_h
            if axis == "left":
                parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                             'class="grid"/>')
            parts.append(f'<text x="{x_text}" y="{y + 4:.1f}" class="axis" text-anchor="{anchor}">'
                         f'{escape(_axis_label(tops[axis] * i / 4))}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" class="axis" '
                 'text-anchor="middle">Time (UTC)</text>')
    if not times:
        parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" class="axis" '
                     f'text-anchor="middle">{escape(empty_text)}</text></svg>')
        return mark_safe("".join(parts))  # nosec B308 B703 - every interpolated value above is escape()d or a number
    start, end = min(times), max(times)
    span = (end - start).total_seconds() or 3600.0

    def x_of(at: datetime) -> float:
        return left + (at - start).total_seconds() / span * plot_w

    def y_of(value, axis: str) -> float:
        peak = tops.get(axis) or 1.0
        return top + plot_h - min(float(value), peak) / peak * plot_h

    for i in range(5):
        at = start + (end - start) * i / 4
        parts.append(f'<text x="{x_of(at):.1f}" y="{height - bottom + 16}" class="axis" '
                     f'text-anchor="middle">{escape(at.strftime(time_format))}</text>')
    for marker in markers:
        x = x_of(marker.at)
        parts.append(f'<g class="{escape(marker.css)}"><title>{escape(marker.at.strftime(time_format))}'
                     f': {escape(marker.label)}</title><line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" '
                     f'y2="{top + plot_h}"/><path d="M{x - 5:.1f},{top - 6} h10 l-5,6 z"/></g>')
    for index, line in enumerate(series):
        segments = [[]]  # a None value (no sample) breaks the line
        for at, value in sorted(line.points, key=lambda p: p[0]):
            if value is None:
                segments.append([])
            else:
                segments[-1].append((x_of(at), y_of(value, line.axis)))
        for segment in filter(None, segments):
            path = f"M{segment[0][0]:.1f},{segment[0][1]:.1f}"
            for x, y in segment[1:]:
                path += f" H{x:.1f} V{y:.1f}" if line.step else f" L{x:.1f},{y:.1f}"
            parts.append(f'<path d="{path}" class="{escape(line.css)}"><title>{escape(line.name)}'
                         '</title></path>')
        legend_x = left + index * 160
        parts.append(f'<g class="legend"><rect x="{legend_x}" y="24" width="12" height="4" '
                     f'class="{escape(line.css)}-key"/><text x="{legend_x + 16}" y="30" class="axis">'
                     f'{escape(line.name)}</text></g>')
    if markers:
        legend_x = left + len(series) * 160
        parts.append(f'<g class="legend"><rect x="{legend_x}" y="24" width="12" height="4" '
                     f'class="marker-key"/><text x="{legend_x + 16}" y="30" class="axis">'
                     'Scaling event</text></g>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # nosec B308 B703 - every interpolated value above is escape()d or a number
