"""Vitals as a flowsheet and as trend series, built from the chart's readings.

Headless and pure: the GUI's flowsheet model and trend charts only display what
this computes, and tests check it without Qt.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from desktop.services.chart import VitalReading
from shared_models.vitals import VITAL_SIGNS, vital_key_for_loinc

#: Flowsheet rows: blood pressure shows as one "120/80" row.
FLOWSHEET_ROWS: tuple[str, ...] = ("bp", "heart_rate", "resp_rate", "temperature", "spo2", "weight")
ROW_LABELS: dict[str, str] = {"bp": "Blood pressure"} | {k: v.label for k, v in VITAL_SIGNS.items()}
ROW_UNITS: dict[str, str] = {"bp": "mmHg"} | {k: v.unit_label for k, v in VITAL_SIGNS.items()}


@dataclass(frozen=True)
class FlowsheetColumn:
    """All readings taken at one time (one visit's set of vitals)."""

    when: datetime
    values: dict[str, float]
    pending: bool = False

    def text(self, row: str) -> str:
        if row == "bp":
            sys_bp, dia_bp = self.values.get("systolic"), self.values.get("diastolic")
            if sys_bp is None or dia_bp is None:
                return ""
            return f"{sys_bp:.0f}/{dia_bp:.0f}"
        value = self.values.get(row)
        if value is None:
            return ""
        return f"{value:.{VITAL_SIGNS[row].decimals}f}"


def reading_values(reading: VitalReading) -> dict[str, float]:
    """Vital-sign key -> value for one reading (a BP panel gives two)."""
    found: dict[str, float] = {}
    for part in reading.values:
        key = vital_key_for_loinc(part.code)
        if key and part.value is not None:
            found[key] = part.value
    return found


def build_flowsheet(readings: Iterable[VitalReading]) -> list[FlowsheetColumn]:
    """One column per time of measurement, newest first (latest visible without scrolling).

    `readings` come newest first (as `ChartView.vitals`); two values of one vital
    sign in the same minute show the newer one.
    """
    by_time: dict[datetime, dict[str, float]] = {}
    pending: set[datetime] = set()
    for reading in readings:
        when = reading.effective.replace(second=0, microsecond=0)
        column = by_time.setdefault(when, {})
        for key, value in reading_values(reading).items():
            column.setdefault(key, value)
        if reading.pending:
            pending.add(when)
    return [
        FlowsheetColumn(when, values, when in pending)
        for when, values in sorted(by_time.items(), key=lambda kv: kv[0], reverse=True)
        if values
    ]


def trend_series(columns: Sequence[FlowsheetColumn], key: str) -> list[tuple[datetime, float]]:
    """Points of one vital sign, oldest first, for a trend chart."""
    return [(c.when, c.values[key]) for c in reversed(columns) if key in c.values]


def latest_values(columns: Sequence[FlowsheetColumn]) -> dict[str, tuple[str, datetime]]:
    """For the summary tab: each row's most recent text and when it was taken."""
    latest: dict[str, tuple[str, datetime]] = {}
    for column in columns:
        for row in FLOWSHEET_ROWS:
            if row not in latest and column.text(row):
                latest[row] = (column.text(row), column.when)
    return latest
