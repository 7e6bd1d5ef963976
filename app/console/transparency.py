"""GET /transparency: the public figures of the 24-hour promise as a page, with a chart of
time to removal per month drawn on the server as SVG (no script, nothing from elsewhere).
The figures are app/takedowns/transparency.py's, the same as GET /v1/transparency."""

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request, Response
from sqlmodel import Session

from app.clock import request_now
from app.db import ReadSessionDep
from app.takedowns.models import Reason
from app.takedowns.transparency import TransparencyReport, transparency_report
from app.web import pages

router = APIRouter(include_in_schema=False)

MONTHS_SHOWN = 12
CACHE_CONTROL = "public, max-age=60"
# The chart's drawing area, in SVG user units (it scales to the page's width).
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 240, 44, 36, 12
DEADLINE_HOURS = 24


@dataclass(frozen=True)
class MonthFigures:
    month: str
    removals: int
    median_hours: float | None
    p95_hours: float | None


@dataclass(frozen=True)
class Bar:
    label: str
    x: float
    width: float
    median_y: float | None
    p95_y: float | None
    figures: MonthFigures


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # (y, "12 h")
    deadline_y: float
    baseline_y: float
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT


def last_months(now: datetime, count: int) -> list[str]:
    """`YYYY-MM` of the `count` months up to and including now's, oldest first."""
    year, month = now.year, now.month
    months = []
    for _ in range(count):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months[::-1]


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 3600


def chart_of(months: list[MonthFigures]) -> Chart:
    """Bars of the median time to removal per month, a mark at the p95, the 24 h line."""
    top_hours = max([DEADLINE_HOURS, *(m.p95_hours for m in months if m.p95_hours is not None)])
    plot_height = HEIGHT - BOTTOM - TOP
    baseline = HEIGHT - BOTTOM

    def y(hours: float) -> float:
        return round(baseline - plot_height * hours / top_hours, 1)

    slot = (WIDTH - LEFT) / max(len(months), 1)
    bars = [
        Bar(
            label=figures.month[2:],
            x=round(LEFT + slot * index + slot * 0.2, 1),
            width=round(slot * 0.6, 1),
            median_y=None if figures.median_hours is None else y(figures.median_hours),
            p95_y=None if figures.p95_hours is None else y(figures.p95_hours),
            figures=figures,
        )
        for index, figures in enumerate(months)
    ]
    ticks = [(y(hours), f"{hours} h") for hours in range(0, int(top_hours) + 1, 6)]
    return Chart(bars=bars, ticks=ticks, deadline_y=y(DEADLINE_HOURS), baseline_y=baseline)


def monthly_figures(session: Session, now: datetime) -> list[MonthFigures]:
    """Time to removal of the requests received in each of the last months."""
    figures = []
    for month in last_months(now, MONTHS_SHOWN):
        report: TransparencyReport = transparency_report(session=session, now=now, month=month)
        removal = report.time_to_removal
        figures.append(
            MonthFigures(
                month=month,
                removals=removal.requests,
                median_hours=_hours(removal.median_seconds),
                p95_hours=_hours(removal.p95_seconds),
            )
        )
    return figures


@router.get("/transparency")
def transparency_page(request: Request, session: ReadSessionDep) -> Response:
    """How the 24-hour promise is kept: outcomes, time to removal, breaches."""
    now = request_now(request)
    months = monthly_figures(session, now)
    context = {
        "report": transparency_report(session=session, now=now),
        "months": months,
        "chart": chart_of(months),
        "reasons": list(Reason),
    }
    return pages.page(
        "console/transparency.html", context, headers={"Cache-Control": CACHE_CONTROL}
    )
