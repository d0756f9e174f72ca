"""The task runner and Op objects: off the GUI thread, answered on it, errors shown once."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from PySide6.QtWidgets import QMessageBox, QWidget

from desktop.ui.context import UiContext
from desktop.ui.ops import Op
from shared_models.errors import NetworkUnavailable, ValidationFailed

pytestmark = pytest.mark.gui


@pytest.fixture
def ctx(qtbot):
    # The ops under test do not touch the facade: they get it and ignore it.
    context = UiContext.create(workstation=object())
    yield context
    context.shutdown()


@pytest.fixture
def parent(qtbot):
    widget = QWidget()
    qtbot.addWidget(widget)
    return widget


def test_store_ops_run_serially_off_the_gui_thread_and_answer_on_it(qtbot, ctx, parent) -> None:
    gui_thread = threading.current_thread()
    worker_threads: list[threading.Thread] = []
    answers: list[tuple[int, threading.Thread]] = []

    def work(n: int):
        def fn(_ws: object) -> int:
            worker_threads.append(threading.current_thread())
            time.sleep(0.01)
            return n

        return fn

    for n in range(5):
        Op(parent, work(n)).success(lambda r: answers.append((r, threading.current_thread()))).run(
            ctx
        )
    qtbot.waitUntil(lambda: len(answers) == 5, timeout=5000)
    assert [r for r, _ in answers] == [0, 1, 2, 3, 4]
    assert all(t is gui_thread for _, t in answers)
    assert len({t.name for t in worker_threads}) == 1
    assert worker_threads[0] is not gui_thread


def test_network_ops_do_not_wait_for_store_ops(qtbot, ctx, parent) -> None:
    release = threading.Event()
    done: list[str] = []
    Op(parent, lambda _ws: release.wait(5)).success(lambda _r: done.append("store")).run(ctx)
    Op(parent, lambda _ws: "net", network=True).success(done.append).run(ctx)
    qtbot.waitUntil(lambda: done == ["net"], timeout=5000)
    release.set()
    qtbot.waitUntil(lambda: done == ["net", "store"], timeout=5000)


def test_clinic_error_shows_its_user_message_not_its_detail(qtbot, ctx, parent, caplog) -> None:
    def fail(_ws: object) -> None:
        raise ValidationFailed(
            "Patient Jane Doe 1970-01-01 rejected",
            issues=[("Observation.valueQuantity", "SpO2 must be between 50 and 100 %")],
        )

    with qtbot.waitSignal(ctx.errors.shown, timeout=5000) as shown, caplog.at_level(logging.INFO):
        Op(parent, fail).run(ctx)
    text = shown.args[0]
    assert ValidationFailed.user_message in text
    assert "SpO2 must be between 50 and 100 %" in text
    assert "Jane Doe" not in text and "Jane Doe" not in caplog.text
    box = ctx.errors.last_box
    assert isinstance(box, QMessageBox) and box.isVisible()
    assert box.icon() == QMessageBox.Icon.Warning
    box.accept()


def test_unexpected_error_is_calm_and_logs_no_message_text(qtbot, ctx, parent, caplog) -> None:
    def crash(_ws: object) -> None:
        raise KeyError("MRN 12345 Smith")

    with qtbot.waitSignal(ctx.errors.shown, timeout=5000) as shown, caplog.at_level(logging.INFO):
        Op(parent, crash).run(ctx)
    assert "saved work is safe" in shown.args[0]
    assert "KeyError" in caplog.text
    assert "Smith" not in caplog.text and "Smith" not in shown.args[0]
    ctx.errors.last_box.accept()


def test_failure_callback_replaces_the_presenter(qtbot, ctx, parent) -> None:
    seen: list[BaseException] = []
    finished: list[bool] = []

    def offline(_ws: object) -> None:
        raise NetworkUnavailable("connect refused")

    Op(parent, offline, network=True).failure(seen.append).finally_(
        lambda: finished.append(True)
    ).run(ctx)
    qtbot.waitUntil(lambda: finished == [True], timeout=5000)
    assert isinstance(seen[0], NetworkUnavailable)
    assert ctx.errors.last_box is None


def test_answer_for_a_closed_widget_is_dropped(qtbot, ctx) -> None:
    widget = QWidget()
    release = threading.Event()
    answers: list[object] = []
    Op(widget, lambda _ws: release.wait(5)).success(answers.append).run(ctx)
    widget.deleteLater()
    qtbot.waitUntil(lambda: not _alive(widget), timeout=5000)
    release.set()
    marker: list[str] = []
    Op(None, lambda _ws: "after").success(marker.append).run(ctx)
    qtbot.waitUntil(lambda: marker == ["after"], timeout=5000)
    assert answers == []


def _alive(widget: QWidget) -> bool:
    import shiboken6

    return shiboken6.isValid(widget)


def test_write_ops_announce_what_changed(qtbot, ctx, parent) -> None:
    from desktop.services.workstation import Changes

    change = Changes("AllergyIntolerance", "a1", "p1", frozenset({"allergies"}), "c1")
    with qtbot.waitSignal(ctx.bus.changed, timeout=5000) as changed:
        Op(parent, lambda _ws: change, announces=True).run(ctx)
    assert changed.args == [frozenset({"allergies", "pending"}), "p1"]
