"""In-process generator on Hugging Face ``transformers``.

Loads any image-text-to-text model (``AutoProcessor`` + ``AutoModelForImageTextToText``)
or any plain causal LM (``AutoTokenizer`` + ``AutoModelForCausalLM``), formats the
conversation with the model's own chat template, and streams tokens through a
callback from inside ``model.generate`` (no extra thread).  Cancellation is a
stopping criterion that polls a flag between tokens.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from assistant.devices.compute import (
    describe_device,
    is_out_of_memory,
    out_of_memory_message,
    pick_device,
    pick_dtype,
    quantization_support,
)
from assistant.errors import BadInputError, GenerationError, ModelLoadError, short_message
from assistant.models.hub import resolve_model
from assistant.models.loading import MODEL_LOAD_LOCK
from assistant import garbage
from assistant.generators.base import (
    BackendInfo,
    ChatMessage,
    GenerationParams,
    GenerationResult,
    GeneratorBackend,
    PromptTooLongError,
    TextCallback,
)
from assistant.encoders.vision import CachingImageProcessor, ImageFeatureCache
from assistant.generators.conversation_cache import ConversationCache
from assistant.progress import CancelToken, Progress, ProgressCallback

log = logging.getLogger(__name__)

# Special tokens that processors treat as image/video/audio placeholders: never
# usable as the text marker below.
_MEDIA_TOKEN = re.compile(r"image|img|vision|video|audio|row_\d|fake_token|patch|boi|eoi", re.I)


class _StreamToCallback:
    """A ``generate`` streamer that decodes incrementally and calls ``on_text``.

    Uses the prefix/read-offset scheme of serving engines: each new token costs
    one short decode, and multi-byte characters split across tokens are held
    back until complete.
    """

    def __init__(self, tokenizer: Any, on_text: TextCallback) -> None:
        self.tokenizer = tokenizer
        self.on_text = on_text
        self.ids: list[int] = []
        self.prefix = 0
        self.read = 0
        self.seen_prompt = False
        self.first_token_time: float | None = None

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def put(self, value: torch.Tensor) -> None:
        if not self.seen_prompt:  # generate() first hands us the prompt
            self.seen_prompt = True
            return
        if self.first_token_time is None:
            self.first_token_time = time.monotonic()
        self.ids.extend(value.reshape(-1).tolist())
        self._emit(final=False)

    def _emit(self, final: bool) -> None:
        prefix_text = self._decode(self.ids[self.prefix : self.read])
        new_text = self._decode(self.ids[self.prefix :])
        if len(new_text) > len(prefix_text) and (final or not new_text.endswith("\ufffd")):
            delta = new_text[len(prefix_text) :]
            self.prefix, self.read = self.read, len(self.ids)
            self.on_text(delta)

    def end(self) -> None:
        if self.read < len(self.ids):
            self._emit(final=True)


class _BrokenOutput(Exception):
    """The model's first logits were not finite numbers."""


class _FiniteFirstStep:
    """A logits processor that checks the first step's scores hold no NaN or +inf (damaged
    weights or an overflow: the reply would be garbage or empty).  -inf is allowed: other
    processors use it to mask tokens.  Only the first step: checking every token would
    cost a GPU sync each time."""

    def __init__(self) -> None:
        self.checked = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if not self.checked:
            self.checked = True
            if bool(torch.isnan(scores).any() or torch.isposinf(scores).any()):
                raise _BrokenOutput
        return scores


class _CancelCriteria:
    """A stopping criterion that ends generation once the token is cancelled."""

    def __init__(self, cancel: CancelToken) -> None:
        self.cancel = cancel

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.cancel.cancelled, dtype=torch.bool, device=input_ids.device)


class TransformersBackend(GeneratorBackend):
    def __init__(
        self,
        model: str,
        device: str = "auto",
        dtype: str = "auto",
        cache_dir: Path | None = None,
        quantization: str = "none",
        offline: bool = False,
    ) -> None:
        self.model_name = model
        self.requested_device = device
        self.requested_dtype = dtype
        self.cache_dir = cache_dir
        self.quantization = quantization  # "none" | "8bit" | "4bit"
        self.offline = offline
        self.model: Any = None
        self.processor: Any = None  # the processor (VLM) or the tokenizer (text LM)
        self.tokenizer: Any = None
        self.is_vlm = False
        self.device: torch.device | None = None
        self.info: BackendInfo | None = None
        self._marker: str | None = None
        self._marker_id: int | None = None
        self.last_inputs: dict[str, Any] | None = None  # what the model last received (tests, debugging)
        self.generate_kwargs: dict[str, Any] = {}  # extra arguments for model.generate (e.g. repetition_penalty)
        # A turn costs only what is new: the conversation's KV cache, and image features
        # computed once per distinct image.  ``reuse=False`` re-reads everything (tests,
        # benchmarks: the output must be the same either way).
        self.reuse = True
        self.conversation = ConversationCache()
        self.features = ImageFeatureCache()
        self._image_token_id: int | None = None
        self._cache_arg = "past_key_values"
        self._encoder_inputs: frozenset[str] = frozenset()  # what get_image_features takes; empty: not used
        self._prepared: tuple | None = None  # what ``prepare`` found, for ``load``

    # -- loading -----------------------------------------------------------------

    def prepare(self, progress: ProgressCallback, cancel: CancelToken) -> None:
        """Device, precision and quantization checked, the model found (downloaded on first
        use) and its configuration read: no weights are loaded yet."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText
        from transformers.models.auto import modeling_auto

        # Device and quantization first: a choice that cannot work is said before a long download.
        device = pick_device(self.requested_device)
        dtype = pick_dtype(device, self.requested_dtype)
        quantization = self._quantization_config(device, dtype)
        folder = resolve_model(self.model_name, self.cache_dir, progress, cancel, offline=self.offline)
        try:
            config = AutoConfig.from_pretrained(folder)
        except Exception as exc:  # noqa: BLE001 - any failure here is "cannot load"
            raise ModelLoadError(f"Could not read the configuration of '{self.model_name}': {short_message(exc)}") from None
        model_type = getattr(config, "model_type", "?")
        if model_type in modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
            self.is_vlm, model_cls = True, AutoModelForImageTextToText
        elif model_type in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            self.is_vlm, model_cls = False, AutoModelForCausalLM
        else:
            raise ModelLoadError(
                f"'{self.model_name}' is a '{model_type}' model, which cannot chat: choose an "
                "image-text-to-text or text-generation model."
            )
        self._prepared = (device, dtype, quantization, folder, config, model_cls)

    def load(self, progress: ProgressCallback, cancel: CancelToken) -> BackendInfo:
        from transformers import AutoProcessor, AutoTokenizer

        if self._prepared is None:
            self.prepare(progress, cancel)
        device, dtype, quantization, folder, config, model_cls = self._prepared
        self._prepared = None
        how = "" if quantization is None else f" ({self.quantization})"
        progress(Progress("load", None, f"Loading {self.model_name} on {device.type}{how}…"))
        failure: str | None = None
        model = None
        try:
            with MODEL_LOAD_LOCK:  # from_pretrained is not thread-safe (assistant/models/loading.py)
                if self.is_vlm:
                    self.processor = AutoProcessor.from_pretrained(folder)
                    self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
                    if getattr(self.processor, "image_processor", None) is not None:  # each image prepared once
                        self.processor.image_processor = CachingImageProcessor(self.processor.image_processor)
                else:
                    self.tokenizer = self.processor = AutoTokenizer.from_pretrained(folder)
                if quantization is None:
                    model = model_cls.from_pretrained(folder, config=config, dtype=dtype)
                    model.to(device)
                else:  # bitsandbytes places the weights itself; a quantized model cannot be moved
                    model = model_cls.from_pretrained(
                        folder,
                        config=config,
                        dtype=dtype,
                        quantization_config=quantization,
                        device_map={"": device.index if device.index is not None else 0},
                    )
                model.eval()
        except Exception as exc:  # noqa: BLE001
            model = None
            if is_out_of_memory(exc):
                failure = out_of_memory_message(self.model_name, "loading")
            else:
                failure = f"Could not load model '{self.model_name}': {short_message(exc)}"
        if failure is not None:
            # Raised here, not in the handler: the exception's frames would keep the half-loaded weights alive.
            self.unload(device)
            raise ModelLoadError(failure)
        if getattr(self.tokenizer, "chat_template", None) is None and getattr(self.processor, "chat_template", None) is None:
            self.unload()
            raise ModelLoadError(
                f"'{self.model_name}' has no chat template, so it is not a chat model; choose an instruct model."
            )
        self.model = model
        self.device = device
        self._image_token_id = _image_token_id(config)
        forward = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"
        encoder = getattr(getattr(model, "model", None), "get_image_features", None)
        if self.is_vlm and self._image_token_id is not None and encoder is not None and "mm_encoder_outputs" in forward:
            self._encoder_inputs = frozenset(inspect.signature(encoder).parameters) - {"kwargs", "return_dict"}
        gen = model.generation_config
        if gen.pad_token_id is None:
            gen.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else gen.eos_token_id
        self._choose_marker()
        self.info = BackendInfo(
            model=self.model_name,
            device=describe_device(device),
            dtype=str(dtype).removeprefix("torch."),
            supports_images=self.is_vlm,
            context_length=self._context_length(config),
            memory_bytes=self._memory(model),
            quantization=self.quantization if quantization is not None else "none",
        )
        return self.info

    def _quantization_config(self, device: torch.device, dtype: torch.dtype) -> Any:
        """A ``BitsAndBytesConfig`` for 8-/4-bit loading, None for full weights; a clear error when impossible."""
        if self.quantization == "none":
            return None
        if self.quantization not in ("8bit", "4bit"):
            raise ModelLoadError(f"Unknown quantization '{self.quantization}'; choose none, 8bit or 4bit.")
        problem = quantization_support(device)
        if problem:
            raise ModelLoadError(problem)
        from transformers import BitsAndBytesConfig

        if self.quantization == "8bit":
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True,
        )

    @staticmethod
    def _memory(model: Any) -> int | None:
        """Bytes the weights and buffers take where they live (RAM or GPU memory)."""
        try:
            return int(model.get_memory_footprint())
        except Exception:  # noqa: BLE001 - a figure for the window, never a reason to fail
            return None

    @staticmethod
    def _context_length(config: Any) -> int | None:
        text_config = getattr(config, "text_config", None) or config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(text_config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def unload(self, device: torch.device | None = None) -> None:
        """Drop the model; its memory is freed (GPU memory handed back to the driver)."""
        device = device or self.device
        self.conversation.clear()
        self.features.clear()
        self.model = self.processor = self.tokenizer = None
        self.last_inputs = None
        self.info = None
        self.device = None
        garbage.collect()  # cycles too; GPU memory back to the driver

    # -- prompting -------------------------------------------------------------------

    def _render(self, chat: list[dict[str, Any]]) -> str:
        return self.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)

    def _chat(self, messages: Sequence[ChatMessage], texts: Sequence[str]) -> list[dict[str, Any]]:
        chat = []
        for message, text in zip(messages, texts):
            if self.is_vlm:
                content: Any = [{"type": "image"} for _ in message.images] + [{"type": "text", "text": text}]
            else:
                content = text
            chat.append({"role": message.role, "content": content})
        return chat

    def _choose_marker(self) -> None:
        """Pick a special token the chat template never writes, to stand in for user text.

        The prompt is rendered with this marker in place of every message's text,
        encoded by the processor (which expands image placeholders), and then each
        marker is replaced by the message's text tokenized with special tokens
        *split*: typed ``<image>`` or ``<|im_end|>`` stay plain text.
        """
        probe = [ChatMessage("system", "s"), ChatMessage("user", "u"), ChatMessage("assistant", "a"), ChatMessage("user", "v")]
        try:
            rendered = self._render(self._chat(probe, [m.text for m in probe]))
        except Exception:  # noqa: BLE001 - e.g. templates without a system role
            rendered = ""
        media = {getattr(self.processor, name, None) for name in ("image_token", "video_token", "audio_token")}
        # bos/eos may be added by the tokenizer itself, which would add a marker
        media |= {self.tokenizer.bos_token, self.tokenizer.eos_token}
        for token, token_id in zip(self.tokenizer.all_special_tokens, self.tokenizer.all_special_ids):
            if token in rendered or token in media or _MEDIA_TOKEN.search(token):
                continue
            if self.tokenizer.convert_tokens_to_ids(token) != token_id:
                continue
            self._marker, self._marker_id = token, token_id
            return
        added = getattr(self.tokenizer, "added_tokens_decoder", {}) or {}
        for token_id, added_token in added.items():
            token = str(added_token)
            if getattr(added_token, "special", False) and token not in rendered and token not in media and not _MEDIA_TOKEN.search(token):
                self._marker, self._marker_id = token, int(token_id)
                return
        log.warning("no spare special token in %s: typed special tokens will be escaped instead", self.model_name)

    def _escape(self, text: str) -> str:
        """Fallback when no marker is available: break special-token strings apart."""
        for token in sorted(self.tokenizer.all_special_tokens, key=len, reverse=True):
            if len(token) > 1 and token in text:
                text = text.replace(token, token[0] + "\u2060" + token[1:])
        image_token = getattr(self.processor, "image_token", None)
        if image_token and image_token in text:
            text = text.replace(image_token, image_token[0] + "\u2060" + image_token[1:])
        return text

    def encode(self, messages: Sequence[ChatMessage], detail: str = "high") -> dict[str, Any]:
        """Messages → model inputs, with every message text kept as literal text.

        ``detail``: "high" (the model's own tiling) or "low" (one tile an image)."""
        images = [img for m in messages for img in m.images]
        if images and not self.is_vlm:
            raise BadInputError(
                f"The model '{self.model_name}' reads text only; remove the image or choose a vision-language model."
            )
        texts = [m.text for m in messages]
        marker = self._marker
        rendered = None
        if marker is not None:
            rendered = self._render(self._chat(messages, [marker] * len(messages)))
            if rendered.count(marker) != len(messages):  # the template dropped or repeated a text
                rendered = None
        if rendered is None:
            prompt = self._render(self._chat(messages, [self._escape(t) for t in texts]))
            return dict(self._tokenize(prompt, images, detail))

        enc = self._tokenize(rendered, images, detail)
        ids = enc["input_ids"][0]
        positions = (ids == self._marker_id).nonzero().flatten().tolist()
        if len(positions) != len(texts):
            raise GenerationError("The prompt could not be assembled for this model.")
        pieces: list[torch.Tensor] = []
        is_text: list[torch.Tensor] = []
        start = 0
        for pos, text in zip(positions, texts):
            text_ids = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
            pieces += [ids[start:pos], torch.tensor(text_ids, dtype=ids.dtype)]
            is_text += [torch.zeros(pos - start, dtype=torch.bool), torch.ones(len(text_ids), dtype=torch.bool)]
            start = pos + 1
        pieces.append(ids[start:])
        is_text.append(torch.zeros(len(ids) - start, dtype=torch.bool))
        keep = torch.ones(len(ids), dtype=torch.bool)
        keep[positions] = False
        new_ids = torch.cat(pieces).unsqueeze(0)
        text_mask = torch.cat(is_text)
        out: dict[str, Any] = dict(enc)
        out["input_ids"] = new_ids
        out["attention_mask"] = torch.ones_like(new_ids)
        for key, value in enc.items():  # per-token side arrays: text tokens get zeros
            if key.endswith("token_type_ids") and isinstance(value, torch.Tensor) and value.shape[-1] == len(ids):
                expanded = torch.zeros((1, len(text_mask)), dtype=value.dtype)
                expanded[0, ~text_mask] = value[0, keep]
                out[key] = expanded
        return out

    def _detail_kwargs(self, detail: str) -> dict[str, Any]:
        """Processor arguments for an image detail: "low" turns tiling off where the model tiles."""
        image_processor = getattr(self.processor, "image_processor", None)
        if detail == "low" and getattr(image_processor, "do_image_splitting", False):
            return {"do_image_splitting": False}
        return {}

    def _tokenize(self, prompt: str, images: list[Any], detail: str = "high") -> Any:
        if self.is_vlm:
            # As the processor's own apply_chat_template does: let the tokenizer add
            # BOS unless the template already wrote it.
            bos = self.tokenizer.bos_token
            kwargs: dict[str, Any] = {
                "text": prompt,
                "return_tensors": "pt",
                "add_special_tokens": not (bos and prompt.startswith(bos)),
            }
            if images:
                kwargs["images"] = images
                kwargs.update(self._detail_kwargs(detail))
            return self.processor(**kwargs)
        return self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)

    # -- generation ----------------------------------------------------------------

    def detail_for(self, requested: str) -> str:
        """``auto`` is one tile an image without a CUDA GPU (a SmolVLM-256M tile costs about
        0.85 s on two CPU cores, a tiled 640x480 frame five tiles), the model's tiling with one."""
        if requested in ("low", "high"):
            return requested
        return "high" if self.device is not None and self.device.type == "cuda" else "low"

    def _encode_image(self, image: Any, detail: str) -> torch.Tensor:
        """One image through the vision tower and connector: (tokens..., hidden) features."""
        processed = self.processor.image_processor(images=[image], return_tensors="pt", **self._detail_kwargs(detail))
        encoder = self.model.model.get_image_features
        kwargs = {k: v.to(self.device) for k, v in processed.items()
                  if k in self._encoder_inputs and isinstance(v, torch.Tensor)}
        if "pixel_values" in kwargs:
            kwargs["pixel_values"] = kwargs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            features = encoder(**kwargs, return_dict=True).pooler_output
        if isinstance(features, (list, tuple)):
            features = torch.cat(list(features), dim=0)
        return features

    def _image_features(self, images: list[Any], ids: torch.Tensor, detail: str) -> tuple[list, list] | None:
        """Each image's features (cached by its pixels) and its token span in ``ids``; None when
        this architecture cannot take pre-computed features (its images are encoded with the prompt)."""
        if not images or not self._encoder_inputs:
            return None
        try:
            features = [self.features.get(image, detail, lambda im: self._encode_image(im, detail)) for image in images]
        except Exception as exc:  # noqa: BLE001 - an architecture whose encoder wants more than we know to give
            log.info("image features cannot be pre-computed for %s (%s); images go with the prompt from now on",
                     self.model_name, short_message(exc))
            self._encoder_inputs = frozenset()  # decided once, not retried every turn
            return None
        positions = (ids == self._image_token_id).nonzero().flatten().tolist()
        counts = [int(f.shape[:-1].numel()) for f in features]
        if sum(counts) != len(positions):
            log.info("image features (%d tokens) do not match the prompt's %d image tokens", sum(counts), len(positions))
            return None
        spans, at = [], 0
        for count in counts:
            spans.append((positions[at], positions[at + count - 1] + 1))
            at += count
        return features, spans

    def _plan(self, inputs: dict[str, Any], images: list[Any], detail: str) -> tuple[dict[str, Any], int]:
        """What to hand to ``generate`` this turn, and how many prompt tokens the KV cache already holds."""
        from transformers import DynamicCache

        ids = inputs["input_ids"][0]
        text_inputs = {k: v for k, v in inputs.items() if k in _TEXT_INPUTS or k.endswith("token_type_ids")}
        planned = self._image_features(images, ids, detail)
        if planned is not None:
            features, spans = planned
        else:
            features, spans = None, []
            if images:  # one span over all image tokens: they are all cached or all prefilled
                positions = (ids == self._image_token_id).nonzero().flatten().tolist() if self._image_token_id is not None else []
                spans = [(positions[0], positions[-1] + 1)] if positions else [(0, len(ids))]
        cache, prefix = self.conversation.reuse(ids, spans, lambda: DynamicCache(config=self.model.config))
        extra: dict[str, Any] = {self._cache_arg: cache}
        if features is not None:
            from transformers.modeling_outputs import BaseModelOutputWithPooling

            new = [f for f, (start, _end) in zip(features, spans) if start >= prefix]
            if new:
                extra["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=new)}
        elif images and all(start >= prefix for start, _end in spans):
            extra.update({k: v for k, v in inputs.items() if k not in text_inputs})  # every image is new
        return {**text_inputs, **extra}, prefix

    def generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        on_text: TextCallback,
        cancel: CancelToken,
    ) -> GenerationResult:
        if self.model is None:
            raise GenerationError("No model is loaded.")
        from transformers import LogitsProcessorList, StoppingCriteriaList

        detail = self.detail_for(params.image_detail)
        images = [img for m in messages for img in m.images]
        if isinstance(getattr(self.processor, "image_processor", None), CachingImageProcessor):
            self.processor.image_processor.use = self.reuse
        try:
            inputs = self.encode(messages, detail)
        except (BadInputError, GenerationError):
            raise
        except Exception as exc:  # noqa: BLE001 - processor errors on odd inputs
            raise BadInputError(f"The model could not take this input: {short_message(exc)}") from None
        prompt_len = inputs["input_ids"].shape[-1]
        limit = self.info.context_length if self.info else None
        if limit and prompt_len + min(params.max_new_tokens, 64) > limit:
            raise PromptTooLongError(f"{prompt_len} prompt tokens do not fit in a context of {limit}")
        max_new = params.max_new_tokens if not limit else max(1, min(params.max_new_tokens, limit - prompt_len))
        self.last_inputs = inputs
        if self.reuse:
            try:
                planned, _prefix = self._plan(inputs, images, detail)
            except Exception as exc:  # noqa: BLE001 - image encoding on odd inputs
                self.conversation.clear()
                if is_out_of_memory(exc):
                    raise GenerationError(out_of_memory_message(self.model_name, "answering with")) from None
                raise BadInputError(f"The model could not take this image: {short_message(exc)}") from None
        else:
            self.conversation.clear()
            planned = dict(inputs)
        model_inputs = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in planned.items()}
        if "pixel_values" in model_inputs:
            model_inputs["pixel_values"] = model_inputs["pixel_values"].to(self.model.dtype)

        chunks: list[str] = []

        def collect(text: str) -> None:
            chunks.append(text)
            on_text(text)

        streamer = _StreamToCallback(self.tokenizer, collect)
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": float(params.temperature)}
            if params.temperature > 0
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        out_of_memory = False
        try:
            with torch.inference_mode():
                output = self.model.generate(
                    **model_inputs,
                    max_new_tokens=max_new,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_CancelCriteria(cancel)]),
                    logits_processor=LogitsProcessorList([_FiniteFirstStep()]),
                    return_dict_in_generate=True,
                    **{**sampling, **self.generate_kwargs},
                )
        except _BrokenOutput:
            self.conversation.clear()
            raise GenerationError(
                f"The model '{self.model_name}' computes invalid numbers (NaN or infinity), so it cannot answer: "
                "its files may be damaged (delete and download it again on the Models page) or this precision "
                "does not suit it (try float32)."
            ) from None
        except Exception as exc:  # noqa: BLE001
            self.conversation.clear()  # half-written: trust none of it
            if not is_out_of_memory(exc):
                log.exception("generation failed")
                raise GenerationError(f"The model failed while answering: {short_message(exc)}") from None
            out_of_memory = True  # raised below, once this exception (and the tensors its frames hold) is gone
        if out_of_memory:
            del model_inputs
            garbage.collect()
            raise GenerationError(
                out_of_memory_message(self.model_name, "answering with") + " A new chat (shorter history) may also fit."
            )
        sequence = output.sequences[0]
        if self.reuse:
            self.conversation.remember(sequence)
        tokens = int(sequence.shape[-1] - prompt_len)
        return GenerationResult(text="".join(chunks), tokens=tokens, stopped=cancel.cancelled)

    def cache_bytes(self) -> int:
        """Memory the conversation's KV cache, the image features and the prepared images take."""
        prepared = getattr(self.processor, "image_processor", None)
        prepared_bytes = prepared.cache.nbytes if isinstance(prepared, CachingImageProcessor) else 0
        return self.conversation.nbytes + self.features.nbytes + prepared_bytes


_TEXT_INPUTS = ("input_ids", "attention_mask")


def _image_token_id(config: Any) -> int | None:
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None
