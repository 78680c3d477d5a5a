"""Chart geometry for the dashboard's inline SVG: pure functions, values in, coordinates out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Point = tuple[str, float | None, float | None, float | None]


def _scale(value: float, domain: tuple[float, float], low: float, high: float) -> float:
    start, end = domain
    share = (value - start) / (end - start) if end != start else 0.0
    return round(low + share * (high - low), 1)


def _domain(values: Sequence[float | None], target: float | None) -> tuple[float, float]:
    known = [value for value in values if value is not None]
    if target is not None:
        known.append(target)
    lowest = min([0.0, *known])
    # Whole tenths below zero, so the axis labels stay round.
    return (-(int(-lowest * 10 + 0.999)) / 10.0 if lowest < 0 else 0.0, 1.0)


def line_chart(
    points: Sequence[Point],
    *,
    target: float | None,
    domain: tuple[float, float] | None = None,
    width: int = 560,
    height: int = 220,
) -> dict[str, Any]:
    """Values (with optional intervals) at evenly spaced x, a polyline, and a target line."""
    left, right, top, bottom = 44, width - 12, 12, height - 30
    every = [bound for _l, value, low, high in points for bound in (value, low, high)]
    domain = domain or _domain(every, target)
    step = (right - left) / max(len(points) - 1, 1)
    drawn = []
    for index, (label, value, low, high) in enumerate(points):
        x = round(left + index * step if len(points) > 1 else (left + right) / 2, 1)
        drawn.append(
            {
                "label": label,
                "value": value,
                "low": low,
                "high": high,
                "x": x,
                "y": None if value is None else _scale(value, domain, bottom, top),
                "y_low": None if low is None else _scale(low, domain, bottom, top),
                "y_high": None if high is None else _scale(high, domain, bottom, top),
                "below_target": target is not None and value is not None and value < target,
            }
        )
    defined = [point for point in drawn if point["y"] is not None]
    banded = [
        point for point in drawn if point["y_low"] is not None and point["y_high"] is not None
    ]
    ticks = []
    start, end = domain
    tick = start
    while tick <= end + 1e-9:
        ticks.append({"label": f"{tick:.1f}", "y": _scale(tick, domain, bottom, top)})
        tick = round(tick + (0.2 if end - start > 1 else 0.1 if end - start <= 0.5 else 0.2), 6)
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": right,
        "top": top,
        "bottom": bottom,
        "points": drawn,
        "line": " ".join(f"{point['x']},{point['y']}" for point in defined),
        "band": " ".join(
            [f"{point['x']},{point['y_high']}" for point in banded]
            + [f"{point['x']},{point['y_low']}" for point in reversed(banded)]
        )
        if len(banded) > 1
        else "",
        "target": target,
        "target_y": None if target is None else _scale(target, domain, bottom, top),
        "ticks": ticks,
        "empty": not defined,
    }


def bar_chart(
    items: Sequence[Point],
    *,
    target: float | None = None,
    domain: tuple[float, float] | None = None,
    width: int = 560,
    row_height: int = 24,
    value_format: str = "{:.2f}",
) -> dict[str, Any]:
    """Horizontal bars from zero, with optional interval whiskers and a target line."""
    label_width, right = 150, width - 56
    every = [bound for _l, value, low, high in items for bound in (value, low, high)]
    domain = domain or _domain(every, target)
    zero = _scale(0.0, domain, label_width, right)
    rows = []
    for index, (label, value, low, high) in enumerate(items):
        y = 4 + index * row_height
        x_value = None if value is None else _scale(value, domain, label_width, right)
        rows.append(
            {
                "label": label,
                "value": value,
                "text": "n/a" if value is None else value_format.format(value),
                "y": y,
                "text_y": y + row_height / 2 + 4,
                "mid_y": y + row_height / 2 - 2,
                "bar_x": None if x_value is None else min(zero, x_value),
                "bar_width": None if x_value is None else max(abs(x_value - zero), 1.0),
                "bar_height": row_height - 8,
                "whisker_low": None if low is None else _scale(low, domain, label_width, right),
                "whisker_high": None if high is None else _scale(high, domain, label_width, right),
                "below_target": target is not None and value is not None and value < target,
            }
        )
    height = 8 + len(items) * row_height
    return {
        "width": width,
        "height": height,
        "label_width": label_width,
        "value_x": right + 6,
        "zero_x": zero,
        "rows": rows,
        "target_x": None if target is None else _scale(target, domain, label_width, right),
        "empty": not items,
    }
