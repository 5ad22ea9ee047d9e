"""First run: models for this computer, one error per failure, and models that are not downloaded yet.

The real window (``main_window``), the real huggingface_hub against the local fake hub
(``tests/fake_hub.py``) or an address where nothing listens (no network), and offline mode.
"""

from __future__ import annotations

import socket
import time

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from assistant.events import State
from assistant.models.recommended import (
    GB,
    RECOMMENDED,
    Machine,
    Verdict,
    find,
    fit,
    machine_memory,
    memory_needed,
    speech_download_bytes,
)
from assistant.settings import DEFAULT_MODEL, Settings
from tests.fake_hub import FakeHub, use_fake_hub
from tests.speech import make_conversation
from ui.panels.download_offer import DownloadOffer
from ui.dialogs.settings import BACKEND_CHOICES, RUNS_ON, SettingsDialog

DEFAULT_ASR_CPU = "Systran/faster-whisper-base.en"


# -- recommended models: the data and what fits ---------------------------------------------------


def test_the_recommended_list_starts_with_the_default_and_has_honest_sizes():
    ids = [m.repo_id for m in RECOMMENDED]
    assert ids[0] == DEFAULT_MODEL and len(set(ids)) == len(ids) and 3 <= len(ids) <= 8
    for m in RECOMMENDED:
        assert "/" in m.repo_id and m.title and m.note
        # bfloat16 weights on the hub: about 2 bytes a parameter (within 15 %).
        assert 1.7 <= m.download_bytes / m.parameters <= 2.3, m.repo_id
    assert [m.parameters for m in RECOMMENDED] == sorted(m.parameters for m in RECOMMENDED)
    assert find("HuggingFaceTB/SmolVLM-500M-Instruct").title == "SmolVLM 500M" and find("nope/nope") is None
    assert speech_download_bytes(DEFAULT_ASR_CPU) and speech_download_bytes("someone/whisper") is None


def test_what_fits_a_laptop_without_a_gpu():
    laptop = Machine(ram_bytes=8 * GB)
    small, smol2, qwen7 = find(DEFAULT_MODEL), find("HuggingFaceTB/SmolVLM2-2.2B-Instruct"), find(
        "Qwen/Qwen2.5-VL-7B-Instruct")
    f = fit(small, laptop)
    assert (f.verdict, f.where, f.precision) == (Verdict.FITS, "cpu", "float32")  # the CPU runs float32
    assert f.needed_bytes == memory_needed(small, "float32") and 1.0 * GB < f.needed_bytes < 2.0 * GB
    assert "Fits" in f.text and "8.0 GB RAM" in f.text
    assert fit(smol2, laptop).verdict is Verdict.TOO_BIG  # 2.25 B parameters in float32: ~11 GB
    assert fit(smol2, Machine(ram_bytes=32 * GB)).verdict is Verdict.FITS
    assert fit(qwen7, laptop).verdict is Verdict.TOO_BIG and "Too big" in fit(qwen7, laptop).text
    # Enough RAM but no GPU: a model that wants a GPU is marked, not recommended as fitting.
    slow = fit(find("Qwen/Qwen2.5-VL-3B-Instruct"), Machine(ram_bytes=64 * GB))
    assert slow.verdict is Verdict.TIGHT and "slow" in slow.text
    # Between 70 % and 90 % of RAM: it loads, but the computer struggles.
    need = memory_needed(small, "float32")
    assert fit(small, Machine(ram_bytes=int(need / 0.8))).verdict is Verdict.TIGHT
    assert fit(small, Machine(ram_bytes=None)).verdict is Verdict.UNKNOWN


def test_what_fits_a_gpu_and_how_precision_and_quantization_change_it():
    gpu24 = Machine(ram_bytes=32 * GB, gpu_bytes=24 * GB, gpu_name="RTX 4090")
    qwen7 = find("Qwen/Qwen2.5-VL-7B-Instruct")
    f = fit(qwen7, gpu24)
    assert (f.verdict, f.where, f.precision) == (Verdict.FITS, "gpu", "bfloat16") and "GPU memory" in f.text
    gpu12 = Machine(ram_bytes=32 * GB, gpu_bytes=12 * GB)
    assert fit(qwen7, gpu12).verdict is Verdict.TOO_BIG
    four = fit(qwen7, gpu12, quantization="4bit")
    assert four.verdict is Verdict.FITS and four.precision == "4bit" and four.needed_bytes < 7 * GB
    assert fit(qwen7, gpu24, dtype="float32").verdict is Verdict.TOO_BIG  # 33 GB of weights
    on_cpu = fit(find(DEFAULT_MODEL), gpu24, device="cpu")  # device cpu: RAM counts, not the GPU
    assert (on_cpu.where, on_cpu.precision, on_cpu.available_bytes) == ("cpu", "float32", 32 * GB)
    assert fit(find(DEFAULT_MODEL), Machine(ram_bytes=16 * GB, mps=True)).precision == "float16"


def test_this_computer_is_measured():
    measured = machine_memory()
    assert measured["ram_bytes"] and measured["ram_bytes"] > 512 * 1024 * 1024
    assert measured["gpu_bytes"] is None or measured["gpu_bytes"] > 0


# -- the Models page lists them, and Download / Use work -------------------------------------------


@pytest.fixture
def default_on_hub(tiny_models, monkeypatch):
    """The fake hub serving a tiny model of the default's architecture under the default's real id."""
    with FakeHub() as server:
        server.add_repo(DEFAULT_MODEL, tiny_models["idefics3"])
        use_fake_hub(monkeypatch, server)
        yield server
        assert server.errors == []


def test_models_page_lists_models_for_this_computer_and_downloads_then_uses_one(
        qtbot, main_window, tiny_models, default_on_hub, paths):
    win = main_window(Settings(model=str(tiny_models["causal_lm"]), device="cpu"))
    win.models_action.trigger()
    page = win.models_page
    qtbot.waitUntil(lambda: page.listing is not None and page.capabilities is not None, timeout=20_000)
    assert page.recommended.topLevelItemCount() == len(RECOMMENDED)
    item = page.recommended_item(DEFAULT_MODEL)
    assert item.text(0) == "SmolVLM 256M" and item.text(1) == "≈ 513.0 MB"
    assert "RAM (float32)" in item.text(2) and item.text(3) in ("Fits", "Tight")  # no GPU here: the CPU
    assert "RAM" in page.machine_label.text()
    big = page.recommended_item("Qwen/Qwen2.5-VL-7B-Instruct")
    ram = page.capabilities["ram_bytes"]
    assert big.text(3) == ("Too big" if ram < 40 * GB else "Tight")  # ~40 GB in float32, and it wants a GPU

    button = page.recommended_buttons[DEFAULT_MODEL]
    assert button.text() == "Download" and button.isEnabled()
    with qtbot.waitSignal(win.models_bridge.download_finished, timeout=30_000):
        button.click()
    assert default_on_hub.downloads()  # it came from the hub
    qtbot.waitUntil(lambda: button.text() == "Use", timeout=10_000)
    assert page.progress.value() == 1000

    with qtbot.waitSignal(win.bridge.status_changed, timeout=60_000,
                          check_params_cb=lambda e: e.state is State.READY and e.model == DEFAULT_MODEL):
        button.click()  # one click: the downloaded model is loaded
    assert win.settings.model == DEFAULT_MODEL and win.settings.backend == "local"
    assert button.text() == "In use" and not button.isEnabled()
    assert DEFAULT_MODEL in page.loaded_label.text()


# -- one words for where the model runs, and one place to choose it -------------------------------


def test_settings_and_models_page_use_the_same_words_and_settings_leads_to_the_models_page(
        qtbot, main_window, tiny_models):
    win = main_window(Settings(model=str(tiny_models["causal_lm"]), device="cpu"))
    win.models_action.trigger()
    page = win.models_page
    page_words = [page.backend.itemText(i) for i in range(page.backend.count())]
    dialog = SettingsDialog(win.settings, win)
    qtbot.addWidget(dialog)
    dialog_words = [dialog.backend.itemText(i) for i in range(dialog.backend.count())]
    assert page_words == dialog_words == [label for label, _ in BACKEND_CHOICES]
    assert dialog._model_form.labelForField(dialog.backend).text() == RUNS_ON
    assert page.backend.parentWidget().layout().labelForField(page.backend).text() == RUNS_ON
    dialog.close()
    page.close()

    def click_choose_model():
        modal = QApplication.activeModalWidget()
        assert isinstance(modal, SettingsDialog)
        modal.choose_model.click()

    QTimer.singleShot(300, click_choose_model)
    win.open_settings()  # modal: returns when "Choose model…" has closed it
    assert win.models_page.isVisible()


# -- no network: one error, at once ----------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """The hub's address answers nothing (as with no network), and offline mode is off."""
    from huggingface_hub import constants

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def failed_reply_text(message) -> str:
    return message.footer.text()


def test_first_run_without_network_fails_at_once_and_says_it_once(qtbot, main_window, no_network):
    started = time.monotonic()
    win = main_window(Settings(device="cpu"), wait_for=State.ERROR)  # the default model, not downloaded
    assert time.monotonic() - started < 15  # not ~25 s of retries
    qtbot.waitUntil(lambda: any("not downloaded yet" in n.text() for n in win.chat.notices), timeout=10_000)
    [notice] = win.chat.notices
    assert DEFAULT_MODEL in notice.text() and "cannot be reached" in notice.text()
    offer = notice.findChild(DownloadOffer)
    assert offer is not None and offer.download_button.text() == "Download (≈ 513.0 MB)"

    # Asking tries the load again: it fails at once, and the reply says so without repeating the notice.
    win.prompt.setPlainText("What is this?")
    started = time.monotonic()
    win.send()
    qtbot.waitUntil(lambda: not win.bridge.busy, timeout=30_000)
    assert time.monotonic() - started < 15
    [reply] = [m for m in win.chat.messages if m.role == "assistant"]
    assert reply.state == "failed"
    assert len(win.chat.notices) == 1  # one notice: not one per load attempt
    said = failed_reply_text(reply)
    assert "not answered" in said and "cannot be reached" not in said, said

    # The offered download says why it fails too, in the notice, and can be tried again.
    offer.download_button.click()
    qtbot.waitUntil(lambda: offer.download_button.isEnabled(), timeout=15_000)
    assert "cannot be reached" in offer.status.text() and offer.download_button.text() == "Try again"
    assert len(win.chat.notices) == 1


def test_a_question_while_the_first_load_fails_gets_one_error_in_its_reply(qtbot, main_window, no_network):
    win = main_window(Settings(device="cpu"), wait_for=State.LOADING)
    win.prompt.setPlainText("Hello?")
    win.send()  # while the start-up load is still trying
    qtbot.waitUntil(lambda: not win.bridge.busy, timeout=30_000)
    qtbot.wait(500)
    [reply] = [m for m in win.chat.messages if m.role == "assistant"]
    said = failed_reply_text(reply)
    reasons = [n.text() for n in win.chat.notices if "cannot be reached" in n.text()]
    assert reply.state == "failed"
    assert len(reasons) + ("cannot be reached" in said) == 1, (reasons, said)


# -- hands-free without the speech model -----------------------------------------------------------


def test_hands_free_without_the_speech_model_says_so_at_once_and_offers_the_download(
        qtbot, main_window, tiny_models, tmp_path, real_whisper, monkeypatch):
    # Two questions: the first while the speech model is missing, the second long after.
    talk = make_conversation(tmp_path / "talk.wav", ["Please describe what you see on my desk.",
                                                      "What is the weather like today?"], gap=14.0, lead=1.5)
    # Offline (HF_HUB_OFFLINE, as in every test): the speech model cannot be fetched now.
    win = main_window(Settings(model=str(tiny_models["causal_lm"]), device="cpu", mic=str(talk.path),
                               max_new_tokens=4), persist_settings=False)
    said: list[str] = []  # what the microphone panel said (a notice there lasts until the state changes)
    show_notice = win.mic_panel.show_notice
    win.mic_panel.show_notice = lambda text: (said.append(text), show_notice(text))
    started = time.monotonic()
    win.mic_panel.hands_free.click()
    qtbot.waitUntil(lambda: any("speech model" in n.text() for n in win.chat.notices), timeout=10_000)
    assert time.monotonic() - started < 5  # at once, not after ~50 s of "Downloading…"
    [notice] = [n for n in win.chat.notices if "speech model" in n.text()]
    assert DEFAULT_ASR_CPU in notice.text() and "not downloaded yet" in notice.text()
    assert "offline" in notice.text()  # why it was not downloaded now
    assert len(win.chat.notices) == 1  # one message, not two
    offer = notice.findChild(DownloadOffer)
    assert offer.download_button.text() == "Download (≈ 145.0 MB)"
    assert any("not downloaded" in text for text in said)  # where the microphone is shown, too
    assert win.bridge.listener is not None and win.bridge.engine.recognizer is None

    # The first question is heard but cannot be understood: said where the microphone is, not again in the chat.
    said.clear()
    qtbot.waitUntil(lambda: any("Not understood" in text for text in said), timeout=talk.spans[0][1] * 1000 + 15_000)
    assert len(win.chat.notices) == 1 and win.chat.messages == []

    # Online again: Download fetches it (progress in the notice); the next question is understood.
    with FakeHub() as hub:
        hub.add_repo(DEFAULT_ASR_CPU, real_whisper)
        use_fake_hub(monkeypatch, hub)
        progress = []
        win.models_bridge.download_progress.connect(lambda p: progress.append(offer.status.text()))
        with qtbot.waitSignal(offer.ready, timeout=30_000):
            offer.download_button.click()
        assert progress and offer.progress.value() == 1000 and "downloaded" in offer.status.text()
        assert hub.downloads()
    assert time.monotonic() - started < talk.spans[1][0], "the download took too long for this test"
    qtbot.waitUntil(lambda: any(m.role == "user" for m in win.chat.messages), timeout=40_000)
    [heard] = [m.text for m in win.chat.messages if m.role == "user"]
    assert "weather" in heard.lower(), heard
    assert win.bridge.engine.recognizer is not None and len(win.chat.notices) == 1
    qtbot.waitUntil(lambda: not win.bridge.busy, timeout=30_000)


def test_a_mistyped_hub_id_at_start_is_said_as_it_is_without_a_download_offer(qtbot, main_window, default_on_hub):
    win = main_window(Settings(model="HuggingFaceTB/SmolVLM-256M-Instrcut", device="cpu"), wait_for=State.ERROR)
    qtbot.waitUntil(lambda: bool(win.chat.notices), timeout=10_000)
    qtbot.wait(300)
    [notice] = win.chat.notices
    assert "not found" in notice.text() and "Instrcut" in notice.text()
    assert notice.findChild(DownloadOffer) is None  # the hub answers: nothing to offer


def test_after_new_chat_the_missing_speech_model_is_offered_again(qtbot, main_window, tiny_models, tmp_path):
    quiet = make_conversation(tmp_path / "talk.wav", ["Hello there."], gap=20.0, lead=20.0)
    win = main_window(Settings(model=str(tiny_models["causal_lm"]), device="cpu", mic=str(quiet.path)),
                      persist_settings=False)
    win.set_listening(True)
    qtbot.waitUntil(lambda: any(n.findChild(DownloadOffer) for n in win.chat.notices), timeout=10_000)
    win.new_chat()  # the notice (and its Download button) is gone
    assert win.chat.notices == []
    win.set_listening(False)
    win.set_listening(True)
    qtbot.waitUntil(lambda: any(n.findChild(DownloadOffer) for n in win.chat.notices), timeout=10_000)
    assert len(win.chat.notices) == 1
    win.set_listening(False)
