"""Garbage collection happens on the GUI thread only while the window runs (PySide crashes otherwise)."""

from __future__ import annotations

import gc
import threading

from assistant import garbage


class Cycle:
    """Garbage only the cyclic collector frees; notes which thread finalized it."""

    def __init__(self, seen: list[str]) -> None:
        self.me = self
        self.seen = seen

    def __del__(self) -> None:
        self.seen.append(threading.current_thread().name)


def test_collection_requested_by_a_worker_runs_on_the_gui_thread(qtbot):
    from ui.collector import install

    collector = install()
    assert not gc.isenabled()  # no automatic collection in whatever thread allocates
    seen: list[str] = []
    Cycle(seen)
    before = collector.collections
    worker = threading.Thread(target=garbage.collect, name="pipeline")  # as Engine.unload does
    worker.start()
    worker.join()
    assert seen == []  # nothing was finalized in the worker
    qtbot.waitUntil(lambda: seen == [threading.main_thread().name], timeout=2_000)
    assert collector.collections == before + 1


def test_the_usual_thresholds_still_collect_on_the_gui_thread(qtbot):
    from ui.collector import install

    install()
    seen: list[str] = []
    for _ in range(gc.get_threshold()[0] + 10):
        Cycle(seen)
    qtbot.waitUntil(lambda: len(seen) > 0, timeout=2_000)
    assert set(seen) == {threading.main_thread().name}
