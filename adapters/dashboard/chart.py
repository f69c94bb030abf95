"""Ended threads per day by reason: the numbers and the geometry of a stacked bar chart.

The template draws it as inline SVG with presentation attributes only (no script, no inline style), so
it renders under the dashboard's content security policy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from bot.types import Case

REASON_LABELS = {"persistent_abuse": "Persistent abuse", "user_requested": "User requested", "other": "Other"}
REASON_COLOURS = {"persistent_abuse": "#c0392b", "user_requested": "#2e86c1", "other": "#7f8c8d"}
MAX_DAYS = 120
WIDTH, HEIGHT = 760, 260
LEFT, BOTTOM, TOP = 40, 40, 16


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass
class Tick:
    x: float
    y: float
    label: str


@dataclass
class Chart:
    days: list[str] = field(default_factory=list)
    #: reason -> count per day (same order as ``days``)
    series: dict[str, list[int]] = field(default_factory=dict)
    bars: list[Bar] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    total: int = 0
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def legend(self) -> list[tuple[str, str, int]]:
        return [(REASON_LABELS[r], REASON_COLOURS[r], sum(v)) for r, v in self.series.items()]


def count_per_day(cases: Iterable[Case]) -> Counter[tuple[str, str]]:
    """(day, reason) -> number of ended threads; moderator actions are not counted."""
    counts: Counter[tuple[str, str]] = Counter()
    for case in cases:
        if case.action == "end" and len(case.ended_at) >= 10:
            reason = case.reason if case.reason in REASON_LABELS else "other"
            counts[(case.ended_at[:10], reason)] += 1
    return counts


def _day_range(days: Iterable[str]) -> list[str]:
    parsed = sorted(date.fromisoformat(d) for d in days)
    if not parsed:
        return []
    first = max(parsed[0], parsed[-1] - timedelta(days=MAX_DAYS - 1))
    return [(first + timedelta(days=i)).isoformat() for i in range((parsed[-1] - first).days + 1)]


def build_chart(cases: Iterable[Case]) -> Chart:
    counts = count_per_day(cases)
    days = _day_range(day for day, _ in counts)
    reasons = [r for r in REASON_LABELS if any(reason == r for _, reason in counts)]
    chart = Chart(days=days, series={r: [counts[(d, r)] for d in days] for r in reasons})
    if not days:
        return chart
    per_day = [sum(chart.series[r][i] for r in reasons) for i in range(len(days))]
    chart.total = sum(per_day)
    top = max(max(per_day), 1)
    plot_w, plot_h = WIDTH - LEFT - 10, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(days)
    bar_w = max(slot * 0.7, 1.0)
    for i, day in enumerate(days):
        base = float(HEIGHT - BOTTOM)
        x = LEFT + i * slot + (slot - bar_w) / 2
        for r in reasons:
            n = chart.series[r][i]
            if not n:
                continue
            h = plot_h * n / top
            base -= h
            chart.bars.append(Bar(round(x, 1), round(base, 1), round(bar_w, 1), round(h, 1),
                                  REASON_COLOURS[r], f"{day}: {n} {REASON_LABELS[r].lower()}"))
    step = max(1, len(days) // 8)
    chart.x_ticks = [Tick(round(LEFT + i * slot + slot / 2, 1), HEIGHT - BOTTOM + 16, days[i][5:])
                     for i in range(0, len(days), step)]
    y_step = max(1, -(-top // 4))
    chart.y_ticks = [Tick(LEFT - 6, round(HEIGHT - BOTTOM - plot_h * v / top, 1), str(v))
                     for v in range(0, top + 1, y_step)]
    return chart
