"""`report liability --chart`: month-end outstanding points and liability value, drawn for people who would
rather look than read (matplotlib, drawn off-screen to a PNG file)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import IO

import matplotlib

matplotlib.use("Agg")  # no screen: draw to files only
from matplotlib import pyplot

#: The picture's size in pixels (width, height) at CHART_DPI.
CHART_SIZE_PX = (1200, 600)
CHART_DPI = 100


def draw_liability_chart(
    file: IO[bytes], points: Sequence[tuple[datetime, int, Decimal]], currency: str, title: str
) -> None:
    """Outstanding points (bars, left axis) and liability value (line, right axis) at each time given, as a PNG
    written to `file`."""
    if not points:
        raise ValueError("nothing to draw: the range holds no month end")
    slots = list(range(len(points)))  # one slot per month end, labelled with its date
    figure, left = pyplot.subplots(figsize=(CHART_SIZE_PX[0] / CHART_DPI, CHART_SIZE_PX[1] / CHART_DPI))
    try:
        left.bar(slots, [outstanding for _, outstanding, _ in points], width=0.6, color="#9ecae1",
                 label="outstanding points")  # fmt: skip
        left.set_ylabel("outstanding points")
        right = left.twinx()
        right.plot(slots, [float(value) for _, _, value in points], color="#d62728", marker="o",
                   label=f"liability ({currency})")  # fmt: skip
        right.set_ylabel(f"liability value ({currency})")
        right.set_ylim(bottom=0)
        left.set_xticks(slots, [moment.date().isoformat() for moment, _, _ in points])
        left.set_title(title)
        figure.autofmt_xdate()
        figure.legend(loc="upper left", bbox_to_anchor=(0.13, 0.87))
        figure.savefig(file, dpi=CHART_DPI, format="png")
    finally:
        pyplot.close(figure)
