"""Streaming overhead and GUI smoothness.

1. Tokens/s of a reply streamed through the whole pipeline (the real window:
   engine in its QThread → bridge → coalesced tokens → markdown chat view),
   against a raw ``model.generate`` loop on the same model and prompt.
   Printed as a ratio (target ≥ 0.95).
2. The GUI thread's worst event-loop stall while a reply streams, measured with
   a 5 ms heartbeat timer (target ≤ 50 ms).

By default it builds a random-weight Idefics3 (SmolVLM's architecture) in a
temporary folder: ``--size tiny`` is the test suite's model; ``--size small``
is wider and deeper, so a token costs about what a small real model costs on a
CPU.  ``--model`` benchmarks any local model folder or cached hub id.

    python benchmarks/streaming.py [--size tiny|small] [--tokens 300] [--runs 5] [--model DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = "Describe this picture in detail, then tell me a long story about it."


def build_model(size: str, folder: Path) -> Path:
    from tests.tiny_models import build_tiny_idefics3

    path = build_tiny_idefics3(folder / "model")
    if size == "small":  # same tokenizer/processor, a bigger random text model
        from transformers import AutoConfig, AutoModelForImageTextToText

        config = AutoConfig.from_pretrained(path)
        text = config.text_config
        text.hidden_size, text.intermediate_size = 576, 1536  # SmolVLM-256M's text width
        text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads = 8, 9, 3
        text.head_dim = 64
        model = AutoModelForImageTextToText.from_config(config)
        model.save_pretrained(path)
    return path


def backend_factory(tokens: int):
    from assistant.generators.transformers_backend import TransformersBackend

    def factory(settings, paths):
        backend = TransformersBackend(settings.model, settings.device, settings.dtype, cache_dir=paths.models)
        backend.generate_kwargs = {"min_new_tokens": tokens}  # every run makes exactly `tokens` tokens
        return backend

    return factory


class RawLoop:
    """Plain transformers: chat template + processor, then ``model.generate``; no streaming."""

    def __init__(self, model_path: str, image, tokens: int) -> None:
        from assistant.generators.base import ChatMessage
        from assistant.progress import NeverCancelled
        from assistant.settings import DEFAULT_SYSTEM_PROMPT

        self.tokens = tokens
        self.backend = backend_factory(tokens)(_settings(model_path, tokens), _paths())
        self.backend.load(lambda p: None, NeverCancelled())
        self.messages = [ChatMessage("system", DEFAULT_SYSTEM_PROMPT), ChatMessage("user", PROMPT, (image,))]

    def run(self) -> float:
        import torch

        started = time.perf_counter()
        inputs = self.backend.encode(self.messages)
        with torch.inference_mode():
            out = self.backend.model.generate(
                **inputs, max_new_tokens=self.tokens, min_new_tokens=self.tokens, do_sample=False,
                temperature=None, top_p=None, top_k=None,
            )
        made = out.shape[-1] - inputs["input_ids"].shape[-1]
        return made / (time.perf_counter() - started)


def _settings(model: str, tokens: int):
    from assistant.settings import Settings

    return Settings(model=model, device="cpu", max_new_tokens=tokens)


_tmp = tempfile.TemporaryDirectory()


def _paths():
    from assistant.settings import AppPaths

    return AppPaths.under(_tmp.name)


class WindowLoop:
    """The real window (offscreen): a question with an image, the reply streamed into the chat.

    ``run`` returns tokens/s from Send to the end of the reply, and the gaps (ms)
    between the beats of a 5 ms heartbeat timer on the GUI thread meanwhile.
    """

    def __init__(self, model_path: str, image_path: Path, tokens: int) -> None:
        from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer

        from assistant.events import State
        from ui.app import create_app
        from ui.main_window import MainWindow

        self.app = create_app([])
        self.image_path = image_path
        self.tokens = tokens
        self.window = MainWindow(_settings(model_path, tokens), _paths(), backend_factory(tokens), persist_settings=False)
        self.window.resize(900, 700)
        self.window.show()
        loaded = QEventLoop()
        self.window.bridge.status_changed.connect(lambda e: e.state is State.READY and loaded.quit())
        self.window.bridge.load()
        loaded.exec()
        self.clock = QElapsedTimer()
        self.gaps: list[float] = []
        self.last = 0
        self.heartbeat = QTimer()
        self.heartbeat.setInterval(5)
        self.heartbeat.timeout.connect(self._beat)

    def _beat(self) -> None:
        now = self.clock.elapsed()
        self.gaps.append(now - self.last - 5)
        self.last = now

    def run(self) -> tuple[float, list[float]]:
        from PySide6.QtCore import QEventLoop

        window = self.window
        window.new_chat()
        finished = []
        done = QEventLoop()

        def on_idle(busy: bool) -> None:
            if not busy:
                done.quit()

        window.bridge.reply_finished.connect(finished.append)
        window.bridge.busy_changed.connect(on_idle)
        window.attach_files([str(self.image_path)])
        window.prompt.setPlainText(PROMPT)
        self.gaps = []
        self.clock.start()
        self.last = 0
        self.heartbeat.start()
        started = time.perf_counter()
        window.send()
        done.exec()  # the GUI event loop runs, as in the app
        elapsed = time.perf_counter() - started
        self.heartbeat.stop()
        window.bridge.reply_finished.disconnect(finished.append)
        window.bridge.busy_changed.disconnect(on_idle)
        assert finished and finished[0].tokens == self.tokens, finished
        return finished[0].tokens / elapsed, list(self.gaps)

    def close(self) -> None:
        self.window.close()
        self.app.processEvents()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "small"), default="small")
    parser.add_argument("--model", help="benchmark this model folder or cached hub id instead")
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from PIL import Image

    from cli.options import quiet_libraries

    quiet_libraries(False)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        model = args.model or str(build_model(args.size, tmp_path))
        image_path = tmp_path / "photo.png"
        Image.effect_noise((320, 240), 60).convert("RGB").save(image_path)
        image = Image.open(image_path).convert("RGB")
        raw_loop = RawLoop(model, image, args.tokens)
        window_loop = WindowLoop(model, image_path, args.tokens)
        raw_loop.run(), window_loop.run()  # warm-up
        raws, pipes, gaps = [], [], []
        for _ in range(args.runs):  # interleaved, so drift in machine speed hits both alike
            raws.append(raw_loop.run())
            rate, run_gaps = window_loop.run()
            pipes.append(rate)
            gaps += run_gaps
        window_loop.close()
    raw, piped = statistics.median(raws), statistics.median(pipes)
    ratio = statistics.median(p / r for p, r in zip(pipes, raws))
    stall, stall_p99 = max(gaps), statistics.quantiles(gaps, n=100)[98]
    label = args.model or f"random Idefics3 ({args.size})"
    print(f"model: {label}; {args.tokens} tokens; median of {args.runs} runs; {os.cpu_count()} CPU cores")
    print(f"raw model.generate:       {raw:8.1f} tokens/s")
    print(f"through the full pipeline: {piped:8.1f} tokens/s")
    print(f"streaming ratio:           {ratio:8.3f}  (median of paired runs; target >= 0.95)")
    print(f"worst GUI stall:           {stall:8.1f} ms  (target <= 50 ms; 99th percentile {stall_p99:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
