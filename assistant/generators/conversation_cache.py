"""The conversation's KV cache: a turn prefills only what is new.

Serving engines keep the previous sequence's keys and values and reuse the
longest common token prefix (llama.cpp's server slots, vLLM's prefix cache);
a desktop app holds one conversation at a time, so one cache does.  Each turn
the whole conversation is rendered and tokenized as before; ``reuse`` finds the
longest prefix it shares with the cached token ids, crops the cache to it, and
the model prefills the rest.  Whatever changed (a new chat, another chat
opened, an edited or regenerated question, a new system prompt, history
dropped for the context window, a reply re-tokenized differently) simply
shortens the common prefix: the cache never serves tokens that differ.

Images: the prefix never ends inside an image's tokens (an image is either
wholly cached or wholly new), and the caller passes features only for the
images after the prefix.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

log = logging.getLogger(__name__)


class ConversationCache:
    def __init__(self) -> None:
        self.ids: torch.Tensor | None = None  # the token ids whose keys and values the cache holds
        self.cache: Any = None  # a transformers ``DynamicCache``
        self.reused_tokens = 0  # of the last ``reuse`` (tests, benchmarks)

    def reuse(self, input_ids: torch.Tensor, image_spans: Sequence[tuple[int, int]], make: Any) -> tuple[Any, int]:
        """The cache to generate ``input_ids`` (1-D) with, and how many leading tokens it holds.

        ``image_spans``: (first, last + 1) token positions of each image; ``make()`` builds
        an empty cache.  At least one token is always left to prefill.
        """
        prefix = 0
        if self.cache is not None and self.ids is not None:
            n = min(len(self.ids), len(input_ids) - 1)
            if n > 0:
                same = (self.ids[:n] == input_ids[:n]).to(torch.int8)
                prefix = n if bool(same.all()) else int(same.argmin())
            for start, end in image_spans:
                if start < prefix < end:
                    prefix = start  # never half an image
        if prefix == 0 or self.cache is None:
            self.clear()
            self.cache = make()
            self.reused_tokens = 0
            return self.cache, 0
        held = self.cache.get_seq_length()
        if prefix < held:
            try:
                self.cache.crop(prefix - held)  # a negative count: drop that many from the end
            except Exception as exc:  # noqa: BLE001 - e.g. a sliding-window layer past its window
                log.info("conversation cache cannot be cropped (%s); prefilling everything", exc)
                self.clear()
                self.cache = make()
                self.reused_tokens = 0
                return self.cache, 0
        self.ids = self.ids[:prefix]
        self.reused_tokens = prefix
        return self.cache, prefix

    def remember(self, sequence: torch.Tensor) -> None:
        """After generation: ``sequence`` (1-D, prompt + reply) and the cache that now holds its keys."""
        if self.cache is None:
            return
        held = self.cache.get_seq_length()
        self.ids = sequence[:held].detach().to("cpu")

    def clear(self) -> None:
        """Forget the conversation (a failed turn, an unload): the next turn prefills everything."""
        self.ids = None
        self.cache = None
        self.reused_tokens = 0

    @property
    def nbytes(self) -> int:
        """Memory the cached keys and values take."""
        cache = self.cache
        if cache is None:
            return 0
        total = 0
        for layer in getattr(cache, "layers", ()):
            for name in ("keys", "values"):
                tensor = getattr(layer, name, None)
                if isinstance(tensor, torch.Tensor):
                    total += tensor.numel() * tensor.element_size()
        return total
