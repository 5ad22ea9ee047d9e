"""The window's history reader thread: orphaned image files are removed at start, off the GUI thread."""

from __future__ import annotations

import threading

from assistant.store.history import HistoryStore
from tests.test_history import age, image_bytes
from ui.workers.history_reader import HistoryReader


def test_the_reader_prunes_old_orphaned_images_at_start_in_its_thread(qtbot, tmp_path, monkeypatch):
    store = HistoryStore(tmp_path / "history.sqlite3", tmp_path / "images")
    conv = store.create_conversation()
    store.add_message(conv, "user", "keep my picture", images=[image_bytes()])
    used = store.messages(conv)[0].images[0].path
    old_orphan = store.images_dir / "ab" / ("ab" + "1" * 62 + ".png")
    young_orphan = store.images_dir / "ab" / ("ab" + "2" * 62 + ".png")
    old_orphan.parent.mkdir(parents=True, exist_ok=True)
    old_orphan.write_bytes(b"left by a crash long ago")
    young_orphan.write_bytes(b"maybe being saved right now")
    age(old_orphan, 2 * 3600)
    age(used, 2 * 3600)

    pruning_threads = []
    prune = HistoryStore.prune_images

    def recording_prune(self, *args, **kwargs):
        pruning_threads.append(threading.current_thread())
        return prune(self, *args, **kwargs)

    monkeypatch.setattr(HistoryStore, "prune_images", recording_prune)
    reader = HistoryReader(store)
    try:
        qtbot.waitUntil(lambda: not old_orphan.exists(), timeout=30_000)
        assert pruning_threads and threading.main_thread() not in pruning_threads
        assert young_orphan.exists()
        assert used.read_bytes() == image_bytes()
    finally:
        assert reader.shutdown(30_000)
        store.close()
