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

    python benchmarks/streaming.py [--size tiny|small] [--tokens 300] [--runs 3] [--model DIR]
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
        import json

        from transformers import AutoConfig, AutoModelForImageTextToText

        config = AutoConfig.from_pretrained(path)
        text = config.text_config
        text.hidden_size, text.intermediate_size = 576, 1536  # SmolVLM-256M's text width
        text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads = 8, 9, 3
        text.head_dim = 64
        model = AutoModelForImageTextToText.from_config(config)
        model.save_pretrained(path)
        json.loads((path / "config.json").read_text())  # still valid
    return path


def backend_factory(tokens: int):
    from assistant.backends.transformers_backend import TransformersBackend

    def factory(settings, paths):
        backend = TransformersBackend(settings.model, settings.device, settings.dtype, cache_dir=paths.models)
        backend.generate_kwargs = {"min_new_tokens": tokens}  # every run makes exactly `tokens` tokens
        return backend

    return factory


def raw_generate(model_path: str, image, tokens: int, runs: int) -> float:
    """Tokens/s of plain ``model.generate`` on the prompt the pipeline builds."""
    import torch

    from assistant.backends.base import ChatMessage, NeverCancelled
    from assistant.settings import DEFAULT_SYSTEM_PROMPT

    backend = backend_factory(tokens)(_settings(model_path, tokens), _paths())
    backend.load(lambda p: None, NeverCancelled())
    messages = [ChatMessage("system", DEFAULT_SYSTEM_PROMPT), ChatMessage("user", PROMPT, (image,))]
    rates = []
    for i in range(runs + 1):
        started = time.perf_counter()
        # What a plain transformers script does too: chat template + processor, then generate.
        inputs = backend.encode(messages)
        with torch.inference_mode():
            out = backend.model.generate(
                **inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                temperature=None, top_p=None, top_k=None,
            )
        elapsed = time.perf_counter() - started
        made = out.shape[-1] - inputs["input_ids"].shape[-1]
        if i:  # the first run warms up
            rates.append(made / elapsed)
    backend.unload()
    return statistics.median(rates)


def _settings(model: str, tokens: int):
    from assistant.settings import Settings

    return Settings(model=model, device="cpu", max_new_tokens=tokens)


_tmp = tempfile.TemporaryDirectory()


def _paths():
    from assistant.settings import AppPaths

    return AppPaths.under(_tmp.name)


def pipeline(model_path: str, image_path: Path, tokens: int, runs: int) -> tuple[float, float, float]:
    """Tokens/s through the real window, and the worst/99th-percentile GUI stall in ms."""
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from assistant.messages import State
    from ui.app import create_app
    from ui.main_window import MainWindow

    app = create_app([])
    window = MainWindow(_settings(model_path, tokens), _paths(), backend_factory(tokens), persist_settings=False)
    window.resize(900, 700)
    window.show()
    loaded = QEventLoop()
    window.bridge.status_changed.connect(lambda e: e.state is State.READY and loaded.quit())
    window.bridge.load()
    loaded.exec()

    clock = QElapsedTimer()
    gaps: list[float] = []
    last = [0]

    def beat() -> None:
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    heartbeat = QTimer()
    heartbeat.setInterval(5)
    heartbeat.timeout.connect(beat)

    rates, worst, p99 = [], [], []
    for i in range(runs + 1):
        window.new_chat()
        finished = []
        done = QEventLoop()

        def on_idle(busy: bool) -> None:
            if not busy:
                done.quit()

        window.bridge.reply_finished.connect(finished.append)
        window.bridge.busy_changed.connect(on_idle)
        window.attach_files([str(image_path)])
        window.prompt.setPlainText(PROMPT)
        gaps.clear()
        clock.start()
        last[0] = 0
        heartbeat.start()
        started = time.perf_counter()
        window.send()
        done.exec()  # the GUI event loop runs as it does in the app
        elapsed = time.perf_counter() - started
        heartbeat.stop()
        window.bridge.reply_finished.disconnect(finished.append)
        window.bridge.busy_changed.disconnect(on_idle)
        reply = finished[0]
        assert reply.tokens == tokens, reply
        if i:
            rates.append(reply.tokens / elapsed)
            worst.append(max(gaps) - 5)
            p99.append(statistics.quantiles(gaps, n=100)[98] - 5)
    window.close()
    QApplication.processEvents()
    return statistics.median(rates), max(worst), statistics.median(p99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "small"), default="small")
    parser.add_argument("--model", help="benchmark this model folder or cached hub id instead")
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from PIL import Image

    from assistant.cli import quiet_libraries

    quiet_libraries(False)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        model = args.model or str(build_model(args.size, tmp_path))
        image_path = tmp_path / "photo.png"
        Image.effect_noise((320, 240), 60).convert("RGB").save(image_path)
        image = Image.open(image_path).convert("RGB")
        raw = raw_generate(model, image, args.tokens, args.runs)
        piped, stall, stall_p99 = pipeline(model, image_path, args.tokens, args.runs)
    label = args.model or f"random Idefics3 ({args.size})"
    print(f"model: {label}; {args.tokens} tokens; median of {args.runs} runs; {os.cpu_count()} CPU cores")
    print(f"raw model.generate:       {raw:8.1f} tokens/s")
    print(f"through the full pipeline: {piped:8.1f} tokens/s")
    print(f"streaming ratio:           {piped / raw:8.3f}  (target >= 0.95)")
    print(f"worst GUI stall:           {stall:8.1f} ms  (target <= 50 ms; 99th percentile {stall_p99:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
