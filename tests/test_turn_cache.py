"""A turn costs only what is new: the conversation KV cache and the image-feature cache.

Correctness first: with greedy decoding, every reply with the caches must be token
for token the reply without them (the whole conversation re-read, every image
encoded with the prompt), across follow-ups, new images, images in history, a
re-rendered history, a stopped reply and a regenerated one.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from assistant.generators.base import ChatMessage, GenerationParams
from assistant.generators.transformers_backend import TransformersBackend
from assistant.progress import NeverCancelled


def picture(seed: int, size=(120, 90)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def loaded(path, reuse: bool) -> TransformersBackend:
    backend = TransformersBackend(str(path), "cpu", "float32")
    backend.load(lambda p: None, NeverCancelled())
    backend.reuse = reuse
    return backend


class StopAfter:
    """A cancel token that trips after ``n`` polls (between tokens)."""

    def __init__(self, n: int) -> None:
        self.n = n

    @property
    def cancelled(self) -> bool:
        self.n -= 1
        return self.n < 0


def reply(backend, messages, tokens=10, cancel=None, detail="high"):
    out = []
    result = backend.generate(messages, GenerationParams(tokens, 0.0, detail), out.append, cancel or NeverCancelled())
    assert "".join(out) == result.text
    return result


@pytest.fixture(scope="module")
def idefics3_tiled(tmp_path_factory):
    from tests.tiny_models import build_tiny_idefics3

    return build_tiny_idefics3(tmp_path_factory.mktemp("tiled") / "idefics3", image_splitting=True)


@pytest.mark.parametrize("name", ["idefics3", "idefics3_tiled", "llava", "causal_lm"])
def test_replies_are_the_same_with_and_without_the_caches(name, tiny_models, idefics3_tiled):
    path = idefics3_tiled if name == "idefics3_tiled" else tiny_models[name]
    vision = name != "causal_lm"
    cached, plain = loaded(path, reuse=True), loaded(path, reuse=False)
    one, two = picture(1), picture(2)
    system = ChatMessage("system", "You are brief.")
    turns = [  # (question, images)
        ("What is in this picture?", (one,) if vision else ()),
        ("And the colours?", ()),  # a text follow-up about an image already in the conversation
        ("Compare it with this one.", (two,) if vision else ()),  # a new image in a later turn
        ("Which was first?", ()),
    ]
    history: list[ChatMessage] = []
    for n, (question, images) in enumerate(turns):
        messages = [system, *history, ChatMessage("user", question, images)]
        expected = reply(plain, messages)
        got = reply(cached, messages)
        assert got.text == expected.text and got.tokens == expected.tokens, f"turn {n + 1}"
        if n:
            prompt = cached.last_inputs["input_ids"].shape[-1]
            assert cached.conversation.reused_tokens > prompt // 2  # only the new part was prefilled
        history += [ChatMessage("user", question, images), ChatMessage("assistant", got.text)]
    if vision:
        assert cached.features.misses == 2  # each distinct image encoded once, over four turns
        prepared = cached.processor.image_processor  # and resized/normalised once: its merge matched
        assert prepared.enabled and prepared.cache.misses <= 4 and prepared.cache.hits >= 4
    # A re-rendered history (a new system prompt) and a regenerated reply: the cache is cropped.
    for messages in (
        [ChatMessage("system", "Answer in French."), *history[:-1]],
        history[:-1],
        history[:-1],
    ):
        assert reply(cached, messages).text == reply(plain, messages).text
    assert cached.cache_bytes() > 0
    cached.unload()
    assert cached.cache_bytes() == 0 and cached.conversation.ids is None


def test_after_a_stopped_reply_the_next_turn_is_still_exact(tiny_models):
    path = tiny_models["idefics3"]
    cached, plain = loaded(path, reuse=True), loaded(path, reuse=False)
    first = [ChatMessage("user", "Tell me a long story.", (picture(3),))]
    stopped = reply(cached, first, tokens=40, cancel=StopAfter(5))
    assert stopped.stopped and 0 < stopped.tokens < 40
    follow = [*first, ChatMessage("assistant", stopped.text), ChatMessage("user", "Go on.")]
    assert reply(cached, follow).text == reply(plain, follow).text


def test_a_reopened_chat_does_not_encode_its_images_again(tiny_models):
    backend = loaded(tiny_models["llava"], reuse=True)
    image = picture(4)
    chat = [ChatMessage("user", "What is it?", (image,))]
    first = reply(backend, chat)
    assert backend.features.misses == 1
    backend.conversation.clear()  # another chat was opened in between: its KV cache is gone
    again = reply(backend, [*chat, ChatMessage("assistant", first.text), ChatMessage("user", "Sure?")])
    assert again.tokens > 0 and backend.features.misses == 1 and backend.features.hits >= 1
    # The same pixels in a new image object are the same image.
    reply(backend, [ChatMessage("user", "And now?", (image.copy(),))])
    assert backend.features.misses == 1


def test_low_detail_is_one_tile_and_high_the_models_tiling(idefics3_tiled):
    backend = loaded(idefics3_tiled, reuse=True)
    big = picture(5, size=(400, 300))
    counts = {}
    for detail in ("low", "high"):
        reply(backend, [ChatMessage("user", "Describe.", (big,))], tokens=2, detail=detail)
        counts[detail] = int((backend.last_inputs["input_ids"] == backend._image_token_id).sum())
    assert counts["high"] > counts["low"] > 0
    assert counts["high"] % counts["low"] == 0  # whole tiles: the global image plus the tiles
    assert backend.detail_for("auto") == "low"  # on a CPU


# Earlier user turns are rendered differently from the last one: history re-renders
# in the middle, so the cached prefix must be cropped where it stops matching.
SHIFTING_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' and not loop.last %}<|im_start|>user (earlier)\n{{ m['content'] }}<|im_end|>\n"
    "{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_template_that_re_renders_history_still_gives_the_same_replies(tiny_models):
    cached, plain = loaded(tiny_models["causal_lm"], reuse=True), loaded(tiny_models["causal_lm"], reuse=False)
    for backend in (cached, plain):
        backend.tokenizer.chat_template = SHIFTING_TEMPLATE
    history: list[ChatMessage] = []
    for question in ("first question", "second question", "third question"):
        messages = [*history, ChatMessage("user", question)]
        expected, got = reply(plain, messages), reply(cached, messages)
        assert got.text == expected.text
        history += [messages[-1], ChatMessage("assistant", got.text)]
    prompt = cached.last_inputs["input_ids"][0]
    rendered = cached.tokenizer.decode(prompt)
    assert "user (earlier)" in rendered  # the history was indeed rendered differently
    assert 0 < cached.conversation.reused_tokens < len(prompt)
