"""What a turn costs: the conversation KV cache and the image-feature cache, against re-reading everything.

Builds a random-weight model with the real shapes of SmolVLM-256M-Instruct (the
default model; random weights time exactly like real ones): a SigLIP vision
tower (hidden 768, 12 layers, 512 px tiles, patch 16, scale factor 4: 64 tokens
a tile, longest edge 2048) and a text model (hidden 576, 30 layers, 9 heads, 3
KV heads, intermediate 1536, vocabulary 49,280).  Then, through the engine:

1. 8 turns, a new 640x480 image each turn: time to first token (TTFT) per
   turn; turn 8 ÷ turn 1 (target ≤ 1.5); and, in the same run, turn 8 asked
   again with every cache off (the old path: the whole conversation re-read,
   every image encoded again) ÷ turn 8 with them (target ≥ 6).
2. A text-only follow-up about an image already in the conversation: its
   TTFT ÷ the TTFT of the turn that brought the image (target ≤ 0.1).
3. A camera question with 2 frames at detail ``auto`` (target TTFT ≤ 6 s).
4. The memory the KV cache and the image-feature cache take after 8 turns.

    python benchmarks/turn_cost.py [--turns 8] [--detail auto|low|high] [--tokens 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

SMOLVLM_VOCAB = 49280


def build_smolvlm_256m_shapes(folder: Path) -> Path:
    """SmolVLM-256M-Instruct's architecture and sizes, random weights, the test tokenizer."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from tests.tiny_models import build_tiny_idefics3, save_quietly

    path = build_tiny_idefics3(folder / "smolvlm-256m-shapes", image_splitting=True)
    config = AutoConfig.from_pretrained(path)
    vision = config.vision_config
    vision.hidden_size, vision.intermediate_size = 768, 3072
    vision.num_hidden_layers, vision.num_attention_heads = 12, 12
    vision.image_size, vision.patch_size = 512, 16
    config.scale_factor = 4
    text = config.text_config
    text.hidden_size, text.intermediate_size = 576, 1536
    text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads = 30, 9, 3
    text.head_dim = 64
    text.max_position_embeddings = 8192
    text.vocab_size = SMOLVLM_VOCAB
    model = AutoModelForImageTextToText.from_config(config)
    save_quietly(model, path)
    processor = AutoProcessor.from_pretrained(path)
    processor.image_seq_len = 64
    image_processor = processor.image_processor
    image_processor.size = {"longest_edge": 2048}
    image_processor.max_image_size = {"longest_edge": 512}
    image_processor.do_image_splitting = True
    processor.save_pretrained(path)
    return path


def photo(seed: int, size=(640, 480)) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
    return Image.fromarray(base).resize(size, Image.BILINEAR)  # smooth, like a photo, not noise


class Run:
    """An engine on the benchmark model, with its caches on or off, recording each reply."""

    def __init__(self, model: Path, paths, tokens: int, detail: str, reuse: bool) -> None:
        from assistant.engine import Engine
        from assistant.events import ReplyFinished
        from assistant.generators.transformers_backend import TransformersBackend
        from assistant.settings import Settings

        def factory(settings, _paths):
            backend = TransformersBackend(settings.model, "cpu", "float32")
            backend.reuse = reuse
            return backend

        self.replies: list = []
        self.engine = Engine(
            Settings(model=str(model), max_new_tokens=tokens, image_detail=detail, system_prompt="You are brief."),
            paths, lambda e: isinstance(e, ReplyFinished) and self.replies.append(e), factory,
        )
        assert self.engine.load(), "the benchmark model did not load"
        tok = self.engine.backend.tokenizer
        # The test tokenizer is smaller than the real vocabulary: never sample ids it cannot decode,
        # and always write exactly `tokens` tokens, so every turn does the same decoding work.
        self.engine.backend.generate_kwargs = {
            "suppress_tokens": list(range(len(tok), SMOLVLM_VOCAB)),
            "min_new_tokens": tokens,
        }

    def ask(self, text: str, images=(), frames=()):
        from assistant.events import ImageInput, UserTurn

        inputs = tuple(ImageInput.from_bytes(_png(im), f"image{i}.png") for i, im in enumerate(images))
        reply = self.engine.handle_turn(UserTurn(text, inputs, frames=frames))
        assert reply is not None, "the turn failed"
        return reply

    def close(self) -> None:
        self.engine.unload()


def _png(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--detail", default="auto", choices=("auto", "low", "high"))
    parser.add_argument("--model", type=Path, help="a model folder (default: build SmolVLM-256M's shapes)")
    args = parser.parse_args()

    from cli.options import quiet_libraries
    from assistant.settings import AppPaths

    quiet_libraries(False)
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, detail={args.detail}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        started = time.monotonic()
        model = args.model or build_smolvlm_256m_shapes(tmp)
        print(f"model ready in {time.monotonic() - started:.1f} s")
        paths = AppPaths.under(tmp / "data")

        cached = Run(model, paths, args.tokens, args.detail, reuse=True)
        backend = cached.engine.backend
        print(f"\n1. {args.turns} turns, a new 640x480 image each")
        ttft = []
        for n in range(args.turns):
            reply = cached.ask(f"What is new in picture {n + 1}?", [photo(n)])
            prompt = backend.last_inputs["input_ids"].shape[-1]
            ttft.append(reply.first_token_seconds)
            print(f"   turn {n + 1}: ttft {reply.first_token_seconds:6.2f} s, prompt {prompt} tokens, "
                  f"{backend.conversation.reused_tokens} reused, total {reply.seconds:6.2f} s")
        # The same last turn again, the old way: everything re-read, every image encoded again.
        chat, last = cached.engine.chat[:-2], cached.engine.chat[-2]
        old = Run(model, paths, args.tokens, args.detail, reuse=False)
        t0 = time.monotonic()
        first = []
        old_reply = old.engine.backend.generate(
            cached.engine._messages(chat + [last]), _params(cached),
            lambda t: first or first.append(time.monotonic() - t0), _never(),
        )
        old_ttft = first[0]
        print(f"   turn {args.turns} with the caches off: ttft {old_ttft:6.2f} s (tokens {old_reply.tokens})")
        print(f"   turn {args.turns} ÷ turn 1 = {ttft[-1] / ttft[0]:.2f} (target ≤ 1.5)")
        print(f"   old ÷ new at turn {args.turns} = {old_ttft / ttft[-1]:.1f} (target ≥ 6)")

        print("\n2. A text follow-up about the last picture")
        follow = cached.ask("What colour is it mostly?")
        print(f"   ttft {follow.first_token_seconds:.2f} s ÷ the image turn's {ttft[-1]:.2f} s = "
              f"{follow.first_token_seconds / ttft[-1]:.3f} (target ≤ 0.1)")

        print("\n4. Memory after the turns above")
        print(f"   KV cache {backend.conversation.nbytes / 2**20:.1f} MiB, image features "
              f"{backend.features.nbytes / 2**20:.1f} MiB ({len(backend.features)} images)")
        old.close()
        cached.close()

        print(f"\n3. A camera question with 2 of 20 recent frames, detail {args.detail}")
        from assistant.devices.camera import Frame

        camera = Run(model, paths, args.tokens, args.detail, reuse=True)
        frames = tuple(Frame(np.asarray(photo(100 + i)), t=i * 0.25, index=50_000 + i) for i in range(20))
        times = []
        for n in range(3):
            camera.engine.new_chat()
            camera.engine.backend.features.clear()  # a new question about new frames: nothing cached
            reply = camera.ask("What am I holding?", frames=frames)
            times.append(reply.first_token_seconds)
        print(f"   ttft median {statistics.median(times):.2f} s of {[round(t, 2) for t in times]} (target ≤ 6 s)")
        camera.close()
    return 0


def _params(run: Run):
    from assistant.generators.base import GenerationParams

    s = run.engine.settings
    return GenerationParams(s.max_new_tokens, s.temperature, s.image_detail)


def _never():
    from assistant.progress import NeverCancelled

    return NeverCancelled()


if __name__ == "__main__":
    sys.exit(main())
