"""The installed Qt binding must not leak references on signal emission.

PySide6 6.12.0 dropped one reference to `True` on every `emit()` from Python;
a workstation open for a shift emits far more than the few thousand signals
that took it to an abort (`bool_dealloc`). pyproject pins below that release.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    fired = Signal(object)


def test_emitting_signals_keeps_reference_counts(qapp: object) -> None:
    emitter = _Emitter()
    received: list[int] = []
    emitter.fired.connect(received.append)
    emitter.fired.emit(0)  # warm-up: first emits may create cached objects
    before = sys.getrefcount(True), sys.getrefcount(False)
    for i in range(2000):
        emitter.fired.emit(i)
    assert len(received) == 2001
    after = sys.getrefcount(True), sys.getrefcount(False)
    # Unrelated objects may hold a few more or fewer; the bug loses one per emit.
    assert all(abs(a - b) < 100 for a, b in zip(after, before, strict=True)), (before, after)
