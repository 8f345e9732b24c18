"""Charts for people who would rather look than read, drawn off-screen by matplotlib: the month-end liability
(`report liability --chart`, a PNG file; the console's finance page, SVG) and the console's KPI charts (a
series per measure, by period).

Figures are made with matplotlib's object API (`Figure`), never pyplot: pyplot keeps global state that
the API server's threads would share, and a `Figure` of its own per chart needs no closing."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import IO, Literal

from matplotlib import ticker
from matplotlib.figure import Figure

#: The picture's size in pixels (width, height) at CHART_DPI.
CHART_SIZE_PX = (1200, 600)
CHART_DPI = 100
#: The KPI charts' size in pixels: four of them sit on one page.
PERIOD_CHART_SIZE_PX = (800, 360)
ChartFormat = Literal["png", "svg"]


def thousands() -> ticker.Formatter:
    """Axis figures with thousands separators, as every table writes them (one per axis: matplotlib binds a
    formatter to its axis)."""
    return ticker.FuncFormatter(lambda value, _: f"{value:,.0f}")


def draw_liability_chart(
    file: IO[bytes], points: Sequence[tuple[datetime, int, Decimal]], currency: str, title: str,
    chart_format: ChartFormat = "png",
) -> None:  # fmt: skip
    """Outstanding points (bars, left axis) and liability value (line, right axis) at each time given, as a PNG
    (or SVG) written to `file`."""
    if not points:
        raise ValueError("nothing to draw: the range holds no month end")
    slots = list(range(len(points)))  # one slot per month end, labelled with its date
    figure = Figure(figsize=(CHART_SIZE_PX[0] / CHART_DPI, CHART_SIZE_PX[1] / CHART_DPI))
    left = figure.subplots()
    left.bar(slots, [outstanding for _, outstanding, _ in points], width=0.6, color="#9ecae1",
             label="outstanding points")  # fmt: skip
    left.set_ylabel("outstanding points")
    left.yaxis.set_major_formatter(thousands())
    right = left.twinx()
    right.plot(slots, [float(value) for _, _, value in points], color="#d62728", marker="o",
               label=f"liability ({currency})")  # fmt: skip
    right.set_ylabel(f"liability value ({currency})")
    right.set_ylim(bottom=0)
    left.set_xticks(slots, [moment.date().isoformat() for moment, _, _ in points])
    left.set_title(title)
    figure.autofmt_xdate()
    figure.legend(loc="upper left", bbox_to_anchor=(0.13, 0.87))
    figure.savefig(file, dpi=CHART_DPI, format=chart_format)


def draw_period_chart(
    file: IO[bytes], periods: Sequence[str], series: Mapping[str, Sequence[float | None]], title: str, *, unit: str,
    chart_format: ChartFormat = "svg",
) -> None:  # fmt: skip
    """Each named series as bars side by side per period (a missing value draws nothing), written to `file`."""
    if not periods:
        raise ValueError("nothing to draw: no period")
    figure = Figure(figsize=(PERIOD_CHART_SIZE_PX[0] / CHART_DPI, PERIOD_CHART_SIZE_PX[1] / CHART_DPI))
    axes = figure.subplots()
    width = 0.8 / max(len(series), 1)
    for index, (name, values) in enumerate(series.items()):
        slots = [slot + index * width for slot in range(len(periods))]
        axes.bar(slots, [0 if value is None else value for value in values], width=width, label=name)
    axes.set_xticks([slot + 0.4 - width / 2 for slot in range(len(periods))], list(periods))
    axes.set_ylabel(unit)
    axes.yaxis.set_major_formatter(thousands())
    axes.set_ylim(bottom=0, top=max(axes.get_ylim()[1], 1) * 1.25)  # room for the legend above the bars
    axes.set_title(title)
    axes.legend(loc="upper left", ncols=len(series))
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(file, dpi=CHART_DPI, format=chart_format)


def svg_data_uri(draw: Callable[[IO[bytes]], None]) -> str:
    """What `draw` writes (an SVG), as a data: URI an <img> shows within its page, drawn from the page's own
    figures: no second request asks the report again."""
    picture = io.BytesIO()
    draw(picture)
    return "data:image/svg+xml;base64," + base64.b64encode(picture.getvalue()).decode()
