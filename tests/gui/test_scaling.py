"""At 150 % and 200 % display scaling the screens grow as a whole (fonts, fields, charts).

Qt reads QT_SCALE_FACTOR when the application starts, so each scale runs in a
fresh interpreter; it renders the sign-in screen and a chart's banner, vitals
form and trend chart, and reports the device pixel ratio and logical sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"
CHILD = """
import json, sys
from datetime import date, datetime, timedelta
from PySide6.QtWidgets import QHBoxLayout, QVBoxLayout, QWidget
from desktop.app import create_application
from desktop.services.chart import Banner
from desktop.ui.chart.banner import PatientBanner
from desktop.ui.chart.trend_chart import Series, TrendChart
from desktop.ui.chart.vitals_entry import VitalsEntryForm
from desktop.ui.context import UiContext
from desktop.ui.signin import SignInScreen
from shared_models.vitals import check_vitals

app = create_application()
page = QWidget()
banner = PatientBanner()
banner.set_banner(Banner("p1", "Okafor, Grace", date(1958, 3, 14), 68, "female", "MRN0012345",
                         ("Penicillin", "Latex")), pending=2)
form = VitalsEntryForm()
form.fields["spo2"].setText("160")
form.show_problems(check_vitals({"spo2": 160.0}))
now = datetime(2026, 11, 28)
chart = TrendChart("Heart rate", "/min")
points = [(now - timedelta(days=30 * i), 70 + i % 7) for i in range(24)]
chart.set_series([Series("Heart rate", points)])
row = QHBoxLayout()
row.addWidget(chart, 2)
row.addWidget(form, 1)
layout = QVBoxLayout(page)
layout.addWidget(banner)
layout.addLayout(row)
page.resize(1100, 560)
page.show()
app.processEvents()
image = page.grab()
image.save(sys.argv[1])
ctx = UiContext.create(None)  # no profile: the sign-in screen alone
signin = SignInScreen(ctx)
signin.resize(900, 560)
signin.show()
app.processEvents()
print(json.dumps({"ratio": image.devicePixelRatio(), "pixels": [image.width(), image.height()],
                  "field_height": form.fields["spo2"].height(),
                  "banner_font_px": banner.name_label.fontInfo().pixelSize(),
                  "signin_fits": signin.sign_in_button.geometry().bottom() < signin.height()}))
ctx.shutdown()
"""


def _render(scale: str, path: Path) -> dict:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QT_SCALE_FACTOR=scale,
               PYTHONPATH=str(ROOT))  # fmt: skip
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], env=env, capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_screens_scale_as_a_whole(tmp_path: Path) -> None:
    """The scaled renders go to docs/screenshots only with `UPDATE_SCREENSHOTS=1`."""
    shots = SHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    base = _render("1", tmp_path / "100.png")
    for scale, name in (("1.5", "11-scaled-150-percent"), ("2", "12-scaled-200-percent")):
        scaled = _render(scale, shots / f"{name}.png")
        assert scaled["ratio"] == pytest.approx(float(scale))
        # The same logical layout rendered with more device pixels: nothing squeezed.
        assert scaled["pixels"][0] == pytest.approx(base["pixels"][0] * float(scale), rel=0.02)
        assert scaled["field_height"] == base["field_height"]
        assert scaled["signin_fits"]
