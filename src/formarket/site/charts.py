"""Bar charts as SVG, drawn at build time: readable without JavaScript, in print and by
screen readers (each chart has a title, a description and a labelled bar per period)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from html import escape

__all__ = ["bar_chart", "format_amount"]

_WIDTH = 640
_HEIGHT = 200
_LEFT = 64
_BOTTOM = 28
_TOP = 14


def format_amount(value: Decimal | int) -> str:
    """A number as people read it: thousands separated, no exponent, trailing zeros dropped."""
    if isinstance(value, int):
        return f"{value:,}"
    quantized = value.quantize(Decimal("0.01")) if value >= 1 else value.normalize()
    text = f"{quantized:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _nice_ceiling(value: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least `value`."""
    if value <= 0:
        return Decimal(1)
    exponent = value.adjusted()
    for step in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
        candidate = step.scaleb(exponent)
        if candidate >= value:
            return candidate
    return Decimal(10).scaleb(exponent)  # pragma: no cover - the loop ends at 10


def bar_chart(
    points: Sequence[tuple[str, Decimal | int]], *, title: str, unit: str, chart_id: str
) -> str:
    """One bar per (label, value), oldest first; `unit` names what the values count and
    `chart_id`, unique in the page, ties the title and description to the chart."""
    if not points:
        raise ValueError("a chart needs at least one point")
    top = _nice_ceiling(max(Decimal(v) for _, v in points))
    plot_w = _WIDTH - _LEFT - 8
    plot_h = _HEIGHT - _TOP - _BOTTOM
    slot = plot_w / len(points)
    bar_w = max(2.0, min(48.0, slot * 0.7))
    label = escape(title)
    cid = escape(chart_id)
    parts = [
        f'<svg class="fm-chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img"'
        f' aria-labelledby="{cid}-t {cid}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{cid}-t">{label}</title>',
        f'<desc id="{cid}-d">{escape(_describe(points, unit))}</desc>',
    ]
    for fraction in (0, 0.5, 1):
        y = _TOP + plot_h * (1 - fraction)
        tick = top * Decimal(str(fraction))
        parts.append(
            f'<line class="fm-chart__grid" x1="{_LEFT}" x2="{_WIDTH - 8}" y1="{y:.1f}"'
            f' y2="{y:.1f}"/>'
            f'<text class="fm-chart__axis" x="{_LEFT - 6}" y="{y + 4:.1f}"'
            f' text-anchor="end">{escape(format_amount(tick))}</text>'
        )
    every = max(1, len(points) // 12)
    for i, (name, value) in enumerate(points):
        height = float(Decimal(value) / top) * plot_h if top else 0.0
        x = _LEFT + slot * i + (slot - bar_w) / 2
        y = _TOP + plot_h - height
        shown = f"{name}: {format_amount(value)} {unit}"
        parts.append(
            f'<rect class="fm-chart__bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}"'
            f' height="{height:.1f}"><title>{escape(shown)}</title></rect>'
        )
        if i % every == 0:
            parts.append(
                f'<text class="fm-chart__axis" x="{x + bar_w / 2:.1f}" y="{_HEIGHT - 8}"'
                f' text-anchor="middle">{escape(name)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _describe(points: Sequence[tuple[str, Decimal | int]], unit: str) -> str:
    return "; ".join(f"{name}: {format_amount(value)} {unit}" for name, value in points)
