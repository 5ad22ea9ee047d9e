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
    seen_when_it_returned: list[list[str]] = []
    worker = threading.Thread(target=lambda: (garbage.collect(), seen_when_it_returned.append(list(seen))),
                              name="pipeline")  # as Engine.unload does
    worker.start()
    qtbot.waitUntil(lambda: not worker.is_alive(), timeout=10_000)  # the GUI thread's timer serves it
    # Finalized on the GUI thread, and before collect() returned in the worker: "collected" holds.
    assert seen_when_it_returned == [[threading.main_thread().name]]
    assert collector.collections == before + 1


def test_unload_in_the_window_frees_the_model_before_it_returns(qtbot, paths):
    """The engine's promise, with the window's collector installed: once ``unload`` returns
    in the pipeline thread, the model is gone (even one that only the cyclic collector frees)."""
    import weakref

    from assistant.engine import Engine
    from assistant.settings import Settings
    from tests.conftest import ScriptedBackend
    from ui.collector import install

    install()

    class CyclicModel:
        def __init__(self) -> None:
            self.me = self

    class Backend(ScriptedBackend):
        def load(self, progress, cancel):
            self.model = CyclicModel()
            return super().load(progress, cancel)

    engine = Engine(Settings(model="cyclic"), paths, lambda e: None, lambda s, p: Backend("hi"))
    assert engine.load()
    model = weakref.ref(engine.backend.model)
    freed_on_return: list[bool] = []
    worker = threading.Thread(target=lambda: (engine.unload(), freed_on_return.append(model() is None)),
                              name="pipeline")
    worker.start()
    qtbot.waitUntil(lambda: not worker.is_alive(), timeout=10_000)
    assert freed_on_return == [True]


def test_the_usual_thresholds_still_collect_on_the_gui_thread(qtbot):
    from ui.collector import install

    collector = install()
    seen: list[str] = []
    # Well past the first threshold: the count it is compared with is allocations minus
    # deallocations in every thread, so another test's threads freeing objects meanwhile
    # lower it (20 past the threshold was not always enough when the tests ran in two processes).
    for _ in range(3 * gc.get_threshold()[0]):
        Cycle(seen)
    try:
        qtbot.waitUntil(lambda: len(seen) > 0, timeout=20_000)  # a 250 ms timer; generous for a loaded machine
    except qtbot.TimeoutError:
        raise AssertionError(f"nothing collected: counts {gc.get_count()}, thresholds {gc.get_threshold()}, "
                             f"gc enabled {gc.isenabled()}, timer active {collector._timer.isActive()}") from None
    assert set(seen) == {threading.main_thread().name}
