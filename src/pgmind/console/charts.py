"""Charts as server-rendered SVG (templates/_chart.html draws them): no script, nothing the CSP must
allow, and every label goes through the template's autoescaping.  A chart is minutes on the x axis
(the last hour, empty minutes kept) and one or more series, as bars or lines."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 180, 48, 22, 10
COLOURS = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#718096")


@dataclass
class Chart:
    title: str
    unit: str
    y_max: float
    x_labels: list[tuple[float, str]]
    bars: list[dict] = field(default_factory=list)
    lines: list[dict] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = HEIGHT - BOTTOM
    top: int = TOP
    empty: bool = False


def last_minutes(minutes: int = 60, now: datetime | None = None) -> list[datetime]:
    """The last `minutes` whole minutes, oldest first, ending with the current one (UTC)."""
    end = (now or datetime.now(timezone.utc)).replace(second=0, microsecond=0)
    return [end - timedelta(minutes=minutes - 1 - i) for i in range(minutes)]


def _key(t: datetime) -> datetime:
    return t.astimezone(timezone.utc).replace(second=0, microsecond=0)


def minute_chart(title: str, unit: str, axis: list[datetime], series: dict[str, dict[datetime, float]],
                 kind: str = "lines", missing: float | None = None) -> Chart:
    """Series keyed by minute (a datetime) drawn over `axis`; a minute a series lacks is `missing`:
    None is a gap in a line (a zero in bars), 0 for counts (nothing written that minute)."""
    values = {name: {_key(k): v for k, v in points.items() if v is not None} for name, points in series.items()}
    top = max([v for points in values.values() for v in points.values()] + [0.0])
    y_max = top * 1.1 if top > 0 else 1.0
    n = max(len(axis), 1)
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / n

    def x(i: int) -> float:
        return round(LEFT + step * (i + 0.5), 1)

    def y(v: float) -> float:
        return round(TOP + plot_h * (1 - v / y_max), 1)

    chart = Chart(title, unit, y_max, [(x(i), t.strftime("%H:%M")) for i, t in enumerate(axis) if i % 10 == 0 or i == n - 1],
                  empty=top == 0)
    for s, (name, points) in enumerate(values.items()):
        colour = COLOURS[s % len(COLOURS)]
        if kind == "bars":
            w = max(step * 0.8 / max(len(values), 1), 1.0)
            for i, t in enumerate(axis):
                v = points.get(_key(t), 0.0)
                if v:
                    chart.bars.append({"x": round(x(i) - step * 0.4 + w * s, 1), "y": y(v), "w": round(w, 1),
                                       "h": round(TOP + plot_h - y(v), 1), "colour": colour,
                                       "label": f"{name} {t.strftime('%H:%M')}: {v:g} {unit}"})
            chart.lines.append({"name": name, "colour": colour, "segments": []})
        else:
            segments, current = [], []
            for i, t in enumerate(axis):
                v = points.get(_key(t), missing)
                if v is None:
                    if current:
                        segments.append(current)
                    current = []
                else:
                    current.append(f"{x(i)},{y(v)}")
            if current:
                segments.append(current)
            chart.lines.append({"name": name, "colour": colour, "segments": [" ".join(p) for p in segments],
                                "dots": [seg[0] for seg in segments if len(seg) == 1]})
    return chart


def group_chart(title: str, unit: str, groups: list[str], series: dict[str, list[float | None]],
                y_max: float | None = None) -> Chart:
    """Bars side by side: one group per label of ``groups`` (e.g. evaluation runs, oldest first), one
    bar per series in each (e.g. a retrieval mode); a missing value (None) draws no bar.  Scores
    from 0 to 1 pass y_max=1, so runs compare on one scale."""
    top = max([v for values in series.values() for v in values if v is not None] + [0.0])
    y_max = y_max or (top * 1.1 if top > 0 else 1.0)
    n = max(len(groups), 1)
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / n
    w = max(step * 0.8 / max(len(series), 1), 1.0)
    chart = Chart(title, unit, y_max, [(round(LEFT + step * (i + 0.5), 1), g) for i, g in enumerate(groups)],
                  empty=not groups or top == 0)
    for s, (name, values) in enumerate(series.items()):
        colour = COLOURS[s % len(COLOURS)]
        for i, v in enumerate(values):
            if v is None:
                continue
            y = round(TOP + plot_h * (1 - min(v, y_max) / y_max), 1)
            chart.bars.append({"x": round(LEFT + step * i + step * 0.1 + w * s, 1), "y": y, "w": round(w, 1),
                               "h": round(TOP + plot_h - y, 1), "colour": colour,
                               "label": f"{groups[i]} · {name}: {v:g}{(' ' + unit) if unit else ''}"})
        chart.lines.append({"name": name, "colour": colour, "segments": []})
    return chart
