"""Server-rendered SVG charts (no JavaScript, nothing fetched): bars over time with a
labelled value axis and unit, and a gauge bar. Values are Decimal; output is safe HTML."""
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
    return mark_safe("".join(parts))


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
