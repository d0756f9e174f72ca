"""A small line chart drawn with QPainter (QtCharts is not part of PySide6-Essentials).

One chart per vital sign; blood pressure draws two series (systolic, diastolic).
The y range pads the data so a flat line is not drawn on the frame, and the
latest value is written beside its point: a nurse reads the number, not the pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

SERIES_COLOURS = ("#2f6fb0", "#7b4fa8")


@dataclass(frozen=True)
class Series:
    label: str
    points: list[tuple[datetime, float]]


def _value_range(series: list[Series], ceiling: float | None) -> tuple[float, float]:
    values = [v for s in series for _, v in s.points]
    low, high = min(values), max(values)
    pad = max((high - low) * 0.15, abs(high) * 0.05, 1.0)
    top = high + pad if ceiling is None else min(high + pad, ceiling)
    return low - pad, max(top, high)


def _time_range(series: list[Series]) -> tuple[float, float]:
    times = [t.timestamp() for s in series for t, _ in s.points]
    low, high = min(times), max(times)
    if high - low < 1:
        return low - 3600, high + 3600
    return low, high


class TrendChart(QWidget):
    def __init__(self, title: str, unit: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.unit = unit
        self._series: list[Series] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAccessibleName(f"{title} trend")

    def set_series(self, series: list[Series]) -> None:
        self._series = [Series(s.label, sorted(s.points)) for s in series if s.points]
        self.update()

    @property
    def point_count(self) -> int:
        return sum(len(s.points) for s in self._series)

    def sizeHint(self) -> QSize:
        metrics = QFontMetrics(self.font())
        return QSize(metrics.horizontalAdvance("M") * 30, metrics.height() * 10)

    def minimumSizeHint(self) -> QSize:
        metrics = QFontMetrics(self.font())
        return QSize(metrics.horizontalAdvance("M") * 18, metrics.height() * 7)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("#ffffff"))
        metrics = QFontMetrics(self.font())
        line = metrics.height()
        painter.setPen(QColor("#1f2933"))
        title_font = self.font()
        title_font.setBold(True)
        painter.setFont(title_font)
        painter.drawText(QPointF(8, line), f"{self.title} ({self.unit})")
        painter.setFont(self.font())
        if not self._series:
            painter.setPen(QColor("#52606d"))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No readings yet")
            return
        left = metrics.horizontalAdvance("0000.0") + 12
        right_margin = metrics.horizontalAdvance("000/000") + 16
        bottom = 4.8 if len(self._series) > 1 else 3.6  # a line for the legend
        plot = QRectF(
            left, line * 1.8, self.width() - left - right_margin, self.height() - line * bottom
        )
        if plot.width() < 20 or plot.height() < 20:
            return
        y_low, y_high = _value_range(self._series, 100.0 if self.unit == "%" else None)
        t_low, t_high = _time_range(self._series)

        def to_point(when: datetime, value: float) -> QPointF:
            x = plot.left() + (when.timestamp() - t_low) / (t_high - t_low) * plot.width()
            y = plot.bottom() - (value - y_low) / (y_high - y_low) * plot.height()
            return QPointF(x, y)

        self._draw_axes(painter, plot, y_low, y_high, t_low, t_high)
        for colour, series in zip(SERIES_COLOURS, self._series, strict=False):
            self._draw_series(painter, series, QColor(colour), to_point)
        if len(self._series) > 1:
            self._draw_legend(painter, plot)

    def _draw_legend(self, painter: QPainter, plot: QRectF) -> None:
        """Series names on their own line under the dates."""
        metrics = QFontMetrics(self.font())
        pairs = list(zip(SERIES_COLOURS, self._series, strict=False))
        width = sum(metrics.horizontalAdvance(s.label) + 30 for _, s in pairs)
        x = plot.center().x() - width / 2
        baseline = plot.bottom() + metrics.height() * 2.3
        for colour, series in pairs:
            painter.fillRect(QRectF(x, baseline - 7, 12, 4), QColor(colour))
            painter.setPen(QColor(colour))
            painter.drawText(QPointF(x + 16, baseline), series.label)
            x += metrics.horizontalAdvance(series.label) + 30

    def _draw_axes(
        self, painter: QPainter, plot: QRectF, y_low: float, y_high: float,
        t_low: float, t_high: float,
    ) -> None:  # fmt: skip
        metrics = QFontMetrics(self.font())
        grid = QPen(QColor("#e4e8ec"))
        for step in range(5):
            fraction = step / 4
            y = plot.bottom() - fraction * plot.height()
            painter.setPen(grid)
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(QColor("#52606d"))
            label = f"{y_low + fraction * (y_high - y_low):.0f}"
            painter.drawText(
                QRectF(0, y - metrics.height() / 2, plot.left() - 6, metrics.height()),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                label,
            )
        painter.setPen(QPen(QColor("#9aa5b1")))
        painter.drawRect(plot)
        painter.setPen(QColor("#52606d"))
        baseline = plot.bottom() + metrics.height() * 1.1
        first = datetime.fromtimestamp(t_low).strftime("%d %b %Y")
        last = datetime.fromtimestamp(t_high).strftime("%d %b %Y")
        painter.drawText(QPointF(plot.left(), baseline), first)
        painter.drawText(QPointF(plot.right() - metrics.horizontalAdvance(last), baseline), last)

    def _draw_series(
        self,
        painter: QPainter,
        series: Series,
        colour: QColor,
        to_point: Callable[[datetime, float], QPointF],
    ) -> None:
        points = [to_point(t, v) for t, v in series.points]
        path = QPainterPath(points[0])
        for point in points[1:]:
            path.lineTo(point)
        painter.setPen(QPen(colour, 2))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        # More points than pixels (years of readings) draw as a band: antialiasing its
        # hundreds of overlapping segments was most of the chart's paint and shows nothing.
        dense = len(points) > painter.device().width() / 2
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, not dense)
        painter.drawPath(path)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        # Individual markers only when they do not merge into a smear.
        if len(points) <= 120:
            painter.setBrush(colour)
            for point in points:
                painter.drawEllipse(point, 2.5, 2.5)
        last_value = series.points[-1][1]
        painter.setPen(colour)
        painter.drawText(points[-1] + QPointF(6, 4), f"{last_value:g}")
