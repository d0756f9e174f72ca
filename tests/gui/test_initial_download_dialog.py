"""The initial download dialog: a determinate bar and the time left once the server estimates."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "desktop"))

from desktop_store_helpers import FAST_KDF

from desktop.services.workstation import Workstation
from desktop.ui.context import UiContext
from desktop.ui.initial_download import InitialDownloadDialog

pytestmark = pytest.mark.gui


def test_download_shows_share_and_time_left_once_the_size_is_known(qtbot, tmp_path: Path) -> None:
    ws = Workstation.open(tmp_path / "profile", "http://127.0.0.1:9", kdf=FAST_KDF)
    try:
        dialog = InitialDownloadDialog(UiContext.create(ws))
        qtbot.addWidget(dialog)
        progress = dialog.progress
        progress.start_push(0)
        progress.start_pull()
        progress.pulled(5_000, 4_000_000)
        dialog.poll()
        assert (dialog.bar.minimum(), dialog.bar.maximum()) == (0, 0)  # size unknown: busy
        assert dialog.status.text().startswith("Received 5,000 records (4.0 MB) in ")

        progress.expect_pull(100_000)  # what the first page's estimate says
        progress.pulled(20_000, 16_000_000)
        dialog.poll()
        assert (dialog.bar.maximum(), dialog.bar.value()) == (100, 25)
        text = dialog.status.text()
        assert text.startswith("Received 25,000 of about 100,000 records, ")
        assert text.endswith((" left", "almost done"))  # this test's pages come instantly
        dialog.show()
        assert dialog.grab().save(str(tmp_path / "initial-download.png"))
    finally:
        ws.close()
