"""The Models page in the real window, driven with qtbot; downloads from the local fake hub."""

from __future__ import annotations

import gc
import weakref

import pytest
from PySide6.QtWidgets import QMessageBox

from assistant.progress import NeverCancelled, Progress
from assistant.events import State
from assistant.models.cache import download
from assistant.settings import Settings, load_settings, save_settings
from tests.test_models import REPO, REPO_DIR, serve_tiny_vlm, wanted_size
from ui.main_window import MainWindow
from ui.panels.download_offer import progress_text


@pytest.fixture
def hub(tiny_models, monkeypatch):
    yield from serve_tiny_vlm(tiny_models, monkeypatch)


@pytest.fixture
def window(main_window, tiny_models):
    """The window with the tiny text model loaded, as a user has it before opening Models…."""

    def open_(wait_for=State.READY, **settings):
        settings = {"model": str(tiny_models["causal_lm"]), "device": "cpu", **settings}
        return main_window(Settings(**settings), wait_for)

    return open_


def open_page(qtbot, win):
    win.models_action.trigger()
    page = win.models_page
    assert page is not None and page.isVisible()
    qtbot.waitUntil(lambda: page.listing is not None and page.capabilities is not None, timeout=20_000)
    return page


def test_progress_text():
    p = Progress("download", 0.25, "", done_bytes=1_500_000, total_bytes=6_000_000,
                 bytes_per_second=500_000, seconds_left=9.2)
    assert progress_text(p) == "1.5 MB of 6.0 MB · 500.0 KB/s · 9 s left"
    done = Progress("download", 1.0, "", done_bytes=6_000_000, total_bytes=6_000_000, bytes_per_second=1e6)
    assert progress_text(done) == "6.0 MB of 6.0 MB · 1.0 MB/s · done"
    assert progress_text(Progress("download", None, "Downloading x…")) == "Downloading x…"


def test_download_shows_progress_cancel_then_resume(qtbot, window, hub, paths):
    win = window()
    page = open_page(qtbot, win)
    assert page.listing.models == () and str(paths.models) in page.cache_label.text()
    assert "No CUDA GPU" in page.capability_note.text()

    hub.throttle(bytes_per_second=120_000)  # ~3 s for the whole model
    page.model.setCurrentText(REPO)
    assert page.download_button.isEnabled() and not page.cancel_button.isEnabled()
    page.download_button.click()
    assert win.models_bridge.downloading == REPO and page.cancel_button.isEnabled()
    assert not page.download_button.isEnabled()  # one download at a time
    shown: list[str] = []
    page.models.download_progress.connect(lambda p: shown.append(page.progress_label.text()))
    qtbot.waitUntil(lambda: "left" in page.progress_label.text() and page.progress.value() > 100, timeout=20_000)
    text = page.progress_label.text()
    assert " of " in text and "/s" in text and "left" in text, text
    assert win.bridge.status.state is State.READY  # the chat model is untouched: chatting goes on

    with qtbot.waitSignal(win.models_bridge.download_failed, timeout=10_000) as failed:
        page.cancel_button.click()
    model, message, cancelled = failed.args
    assert model == REPO and cancelled and "cancelled" in message
    assert "continues where it stopped" in page.progress_label.text() and page.problem.isHidden()
    cut_at = page.progress.value()
    assert 0 < cut_at < 1000
    qtbot.waitUntil(lambda: page.cached.topLevelItemCount() == 1, timeout=10_000)
    assert "partial download" in page.cached.topLevelItem(0).text(2)
    assert len(set(shown)) >= 3, shown  # the figures moved while it ran

    # Again, faster: it continues from the kept part, and ends at 100 %.
    hub.throttle(bytes_per_second=2_000_000)
    before = hub.request_count
    with qtbot.waitSignal(win.models_bridge.download_finished, timeout=20_000):
        page.download_button.click()
    ranged = [r for r in hub.requests[before:] if r.range and r.path.endswith("/model.safetensors")]
    assert [r.status for r in ranged] == [206]
    assert page.progress.value() == 1000 and page.progress_label.text().endswith("done")
    qtbot.waitUntil(lambda: page.cached.topLevelItemCount() == 1
                    and page.cached.topLevelItem(0).text(2) == "ready", timeout=10_000)
    item = page.cached.topLevelItem(0)
    assert item.text(0) == REPO and page.listing.models[0].size_bytes == wanted_size(hub)
    assert page.model.findText(REPO) >= 0  # offered as a choice now


def test_delete_asks_first_and_removes_the_files(qtbot, window, hub, paths, monkeypatch):
    download(REPO, paths.models, lambda p: None, NeverCancelled())
    win = window()
    page = open_page(qtbot, win)
    assert page.select(REPO) and page.delete_button.isEnabled()
    size = page.listing.models[0].size_bytes

    asked: list[str] = []

    def answer(no_or_yes):
        def question(parent, title, text, *args):
            asked.append(text)
            return no_or_yes
        return question

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.No))
    assert not page.delete_selected()
    assert REPO in asked[0] and page.listing.models[0].size_text in asked[0]
    assert (paths.models / REPO_DIR).is_dir()

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Yes))
    with qtbot.waitSignal(win.models_bridge.deleted, timeout=10_000) as deleted:
        page.delete_button.click()
    assert deleted.args[0] == REPO and deleted.args[1] >= size
    assert not (paths.models / REPO_DIR).exists()
    qtbot.waitUntil(lambda: page.cached.topLevelItemCount() == 0, timeout=10_000)
    assert "freed" in page.progress_label.text() and not page.delete_button.isEnabled()


def test_choices_are_applied_and_only_they_are_saved(qtbot, window, paths, tiny_models, monkeypatch):
    save_settings(paths, Settings(model="saved/model", max_new_tokens=99))
    win = window()  # this session runs the tiny model: a command-line override, not saved
    page = open_page(qtbot, win)
    # HF_HUB_OFFLINE in the environment (as in all tests) wins: shown, and not switchable here.
    assert page.offline.isChecked() and not page.offline.isEnabled() and "HF_HUB_OFFLINE" in page.offline.toolTip()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    page.set_settings(win.settings)
    assert not page.offline.isChecked() and page.offline.isEnabled()
    assert page.model.currentText() == str(tiny_models["causal_lm"]) and page.device.currentText() == "cpu"
    assert not page.apply_button.isEnabled()  # nothing changed yet

    page.dtype.setCurrentText("bfloat16")
    page.offline.setChecked(True)
    assert page.apply_button.isEnabled()
    with qtbot.waitSignal(win.bridge.status_changed, timeout=30_000, check_params_cb=lambda e: e.state is State.READY):
        page.apply_button.click()
    saved = load_settings(paths).settings
    assert (saved.model, saved.max_new_tokens) == ("saved/model", 99)  # the override was not written
    assert (saved.dtype, saved.offline, saved.quantization) == ("bfloat16", True, "none")
    assert win.settings.dtype == "bfloat16" and win.settings.offline
    assert win.bridge.status.dtype == "bfloat16"  # reloaded in the new precision
    assert "bfloat16" in page.loaded_label.text() and not page.apply_button.isEnabled()

    # 4-bit on a computer without CUDA: a clear message says why it cannot load, and the model
    # in use stays loaded and chosen (found out before anything was unloaded).
    page.quantization.setCurrentIndex(page.quantization.findData("4bit"))
    with qtbot.waitSignal(win.bridge.error, timeout=30_000) as error:
        page.apply_button.click()
    assert "CUDA GPU" in error.args[0].message and "quantization 'none'" in error.args[0].message
    assert "Still using" in error.args[0].message
    qtbot.waitUntil(lambda: win.settings.quantization == "none", timeout=5000)
    assert load_settings(paths).settings.quantization == "none" and page.quantization.currentData() == "none"
    qtbot.waitUntil(lambda: bool(win.chat.notices), timeout=5000)
    assert "CUDA GPU" in win.chat.notices[-1].text()
    assert win.bridge.engine.backend is not None and "No model is loaded" not in page.loaded_label.text()


def test_the_backend_is_chosen_here_too(qtbot, window, paths, monkeypatch):
    win = window()
    page = open_page(qtbot, win)
    assert page.backend.currentData() == "local" and page.server_button.isHidden()
    page.backend.setCurrentIndex(page.backend.findData("openai"))
    assert not page.server_button.isHidden() and win.settings.base_url in page.server_note.text()
    opened = []
    monkeypatch.setattr(win, "open_settings", lambda: opened.append(True))
    page.server_settings_requested.disconnect()
    page.server_settings_requested.connect(win.open_settings)
    page.server_button.click()
    assert opened == [True]  # the server's address, model and key are edited in Settings…
    with qtbot.waitSignal(win.bridge.model_kept, timeout=60_000):
        page.apply_button.click()  # no server runs at that address: a clear error, and the local model stays
    assert win.settings.backend == "local" and load_settings(paths).settings.backend == "local"
    assert win.bridge.engine.backend is not None and page.backend.currentData() == "local"


def test_unload_frees_the_model_and_the_memory_is_shown(qtbot, window):
    win = window()
    page = open_page(qtbot, win)
    memory = win.bridge.status.memory_bytes
    assert memory and memory == win.bridge.engine.info.memory_bytes
    assert "takes" in page.loaded_label.text() and "KB" in page.loaded_label.text()
    assert win.model_label.text().endswith("KB")  # the status line shows it too
    old = weakref.ref(win.bridge.engine.backend.model)

    with qtbot.waitSignal(win.bridge.status_changed, timeout=10_000,
                          check_params_cb=lambda e: e.state is State.UNLOADED):
        page.unload_button.click()
    gc.collect()
    assert old() is None and win.bridge.engine.backend is None
    assert "No model is loaded" in page.loaded_label.text() and not page.unload_button.isEnabled()
    assert "KB" not in win.model_label.text()


def test_offline_switch_refuses_a_download_with_a_clear_message(qtbot, window, hub):
    win = window()
    page = open_page(qtbot, win)
    page.offline.setChecked(True)
    page.model.setCurrentText(REPO)
    with qtbot.waitSignal(win.models_bridge.download_failed, timeout=10_000) as failed:
        page.download_button.click()
    assert not failed.args[2]
    assert not page.problem.isHidden() and "offline" in page.problem.text() and REPO in page.problem.text()
    assert hub.requests == []
    # A folder has nothing to download.
    page.model.setCurrentText(str(win.settings.model))
    assert not page.download_button.isEnabled()


def test_closing_the_window_mid_download_joins_the_thread(qtbot, paths, tiny_models, hub):
    win = MainWindow(Settings(model=str(tiny_models["causal_lm"]), device="cpu"), paths)
    win.show()
    page = open_page(qtbot, win)
    hub.throttle(bytes_per_second=50_000)  # ~7 s: still running when the window closes
    page.model.setCurrentText(REPO)
    page.download_button.click()
    qtbot.waitUntil(lambda: page.progress.value() > 0, timeout=20_000)
    win.close()
    assert win.models_bridge._thread.isFinished() and win.bridge._thread.isFinished()
    assert not list((paths.models / REPO_DIR / "snapshots").glob("*/model.safetensors"))
    win.deleteLater()


def test_a_mistyped_model_keeps_the_model_in_use(qtbot, window, paths, tiny_models, tmp_path):
    win = window()
    page = open_page(qtbot, win)
    model = win.bridge.engine.backend.model
    errors = []
    win.bridge.error.connect(errors.append)
    page.model.setCurrentText(str(tmp_path / "SmolVLM-256M-Instrcut"))
    with qtbot.waitSignal(win.bridge.model_kept, timeout=30_000):
        page.apply_button.click()
    qtbot.waitUntil(lambda: win.bridge.status.state is State.READY, timeout=10_000)
    assert win.bridge.engine.backend is not None and win.bridge.engine.backend.model is model  # never unloaded
    assert win.settings.model == str(tiny_models["causal_lm"])
    assert load_settings(paths).settings.model == str(tiny_models["causal_lm"])  # the failed name is not saved
    assert page.model.currentText() == str(tiny_models["causal_lm"])
    assert len(errors) == 1 and "does not exist" in errors[0].message and "Still using" in errors[0].message
    assert "No model is loaded" not in page.loaded_label.text()


def test_a_model_whose_weights_fail_to_load_gives_the_model_in_use_back(qtbot, window, paths, tiny_models, tmp_path):
    """The new model is found and prepared, then its weights fail: the model in use is loaded again,
    shown as the choice, and the page never says that no model is loaded."""
    import shutil

    broken = tmp_path / "broken-weights"
    shutil.copytree(tiny_models["causal_lm"], broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not safetensors at all")
    win = window()
    page = open_page(qtbot, win)
    shown: list[str] = []
    win.bridge.status_changed.connect(lambda e: shown.append(page.loaded_label.text()))
    errors = []
    win.bridge.error.connect(errors.append)
    page.model.setCurrentText(str(broken))
    with qtbot.waitSignal(win.bridge.model_kept, timeout=30_000):
        page.apply_button.click()
    qtbot.waitUntil(lambda: win.bridge.status.state is State.READY
                    and win.bridge.status.model == str(tiny_models["causal_lm"]), timeout=30_000)
    assert win.bridge.engine.backend is not None
    assert win.settings.model == str(tiny_models["causal_lm"]) and page.model.currentText() == str(tiny_models["causal_lm"])
    assert load_settings(paths).settings.model == str(tiny_models["causal_lm"])
    assert errors and str(broken.name) in errors[0].message
    assert shown and not any("No model is loaded" in text for text in shown), shown
    assert str(tiny_models["causal_lm"]) in page.loaded_label.text()


def test_the_first_model_download_can_be_cancelled_from_the_status_line(qtbot, main_window, hub):
    """A first run downloads the model while the status line shows its progress; Cancel there stops
    it (no error: the state says it was cancelled), and the next load continues the partial file."""
    hub.throttle(bytes_per_second=120_000)  # ~3 s for the whole model
    win = main_window(Settings(model=REPO, device="cpu"), wait_for=State.LOADING)
    qtbot.waitUntil(lambda: win.progress.isVisible() and win.progress.maximum() == 1000
                    and win.progress.value() > 50, timeout=20_000)
    assert win.cancel_load_button.isVisible() and win.cancel_load_button.isEnabled()
    errors = []
    win.bridge.error.connect(errors.append)
    with qtbot.waitSignal(win.bridge.status_changed, timeout=10_000,
                          check_params_cb=lambda e: e.state is State.UNLOADED):
        win.cancel_load_button.click()
    assert "cancelled" in win.state_label.text(), win.state_label.text()
    assert not win.cancel_load_button.isVisible() and not win.progress.isVisible()
    assert errors == [] and win.chat.notices == []  # a cancel is not an error

    hub.throttle(bytes_per_second=2_000_000)
    before = hub.request_count
    with qtbot.waitSignal(win.bridge.status_changed, timeout=30_000,
                          check_params_cb=lambda e: e.state is State.READY):
        win.bridge.load()
    ranged = [r for r in hub.requests[before:] if r.range and r.path.endswith("/model.safetensors")]
    assert [r.status for r in ranged] == [206]  # it went on from where the cancel left it
    assert not win.cancel_load_button.isVisible()
