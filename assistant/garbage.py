"""Freeing memory after a model is dropped, on the thread that may do it.

A full ``gc.collect()`` finalizes whatever cycles it finds, wherever they came
from.  In the window those include Qt wrapper objects, and finalizing a Qt
object from a worker thread crashes the process.  So the engine never calls
``gc.collect()`` itself: it calls ``collect()``, and a host with such a rule
(the window: ``ui/collector.py``) routes the work to its main thread with ``set_collector``.
The default, for the command line and plain Python, collects at once.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable


def _collect_now() -> None:
    gc.collect()
    if "torch" not in sys.modules:  # no model ever ran here (a remote backend): nothing to hand back
        return  # and importing torch for it would freeze the window (2 s idle, 40 s on 2 busy cores)
    from assistant.devices.compute import free_accelerator_memory

    free_accelerator_memory()


_collector: Callable[[], None] = _collect_now


def collect() -> None:
    """Collect garbage and hand cached GPU memory back to the driver.  Returns when that is
    done: at once here, or once the host's thread has collected (the window waits a bounded
    time for it: see ``ui/collector.py``)."""
    _collector()


def collect_now() -> None:
    _collect_now()


def set_collector(collector: Callable[[], None] | None) -> None:
    """Route ``collect()`` (None: back to collecting at once, in the calling thread)."""
    global _collector
    _collector = collector or _collect_now
