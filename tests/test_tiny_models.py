"""Quick checks that the tiny offline models in tests/tiny_models.py load and run
through the same Auto* entry points production code uses for hub checkpoints."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # must precede the first huggingface_hub import

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny_models  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from PIL import Image  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
)

ODD_TEXT = "Hello 你好 😀 naïve — café\n\tx = 42"


@pytest.fixture(autouse=True, scope="module")
def _offline():
    import huggingface_hub.constants as hub_constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(hub_constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture(scope="module")
def idefics3_path(tmp_path_factory):
    return tiny_models.build_tiny_idefics3(tmp_path_factory.mktemp("idefics3"))


@pytest.fixture(scope="module")
def llava_path(tmp_path_factory):
    return tiny_models.build_tiny_llava(tmp_path_factory.mktemp("llava"))


@pytest.fixture(scope="module")
def causal_lm_path(tmp_path_factory):
    return tiny_models.build_tiny_causal_lm(tmp_path_factory.mktemp("causal_lm"))


@pytest.fixture
def image():
    return Image.new("RGB", (100, 60), (200, 30, 30))


def _vlm_messages():
    return [
        {"role": "system", "content": [{"type": "text", "text": "You are helpful."}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
    ]


def _generate(model, inputs, n=10):
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=n, do_sample=False)
    prompt_len = inputs["input_ids"].shape[1]
    assert prompt_len < out.shape[1] <= prompt_len + n
    return out


def test_idefics3(idefics3_path, image):
    processor = AutoProcessor.from_pretrained(idefics3_path)
    model = AutoModelForImageTextToText.from_pretrained(idefics3_path)
    assert type(processor).__name__ == "Idefics3Processor"
    assert type(processor.image_processor).__name__ == "Idefics3ImageProcessorPil"
    assert type(model).__name__ == "Idefics3ForConditionalGeneration"

    tok = processor.tokenizer
    assert tok.eos_token == "<end_of_utterance>"
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    image_id = tok.convert_tokens_to_ids("<image>")
    assert model.config.image_token_id == image_id
    assert tok.decode(tok(ODD_TEXT)["input_ids"]) == ODD_TEXT

    prompt = processor.apply_chat_template(_vlm_messages(), add_generation_prompt=True, tokenize=False)
    assert prompt == (
        "<|im_start|>System: You are helpful.<end_of_utterance>\n"
        "User:<image>What is this?<end_of_utterance>\nAssistant:"
    )
    inputs = processor(text=prompt, images=[image], return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(image_id) == tiny_models.IDEFICS3_IMAGE_SEQ_LEN == 16
    assert ids.count(tok.convert_tokens_to_ids("<fake_token_around_image>")) == 2
    assert ids.count(tok.convert_tokens_to_ids("<global-img>")) == 1
    assert tuple(inputs["pixel_values"].shape) == (1, 1, 3, 64, 64)
    _generate(model, inputs)

    # The tokenize=True path, with the PIL image inside the message.
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Hi"}]}]
    enc = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert enc["input_ids"][0].tolist().count(image_id) == 16
    assert "pixel_values" in enc
    _generate(model, enc)


def test_idefics3_image_splitting(tmp_path, image):
    path = tiny_models.build_tiny_idefics3(tmp_path / "split", image_splitting=True)
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    prompt = processor.apply_chat_template(_vlm_messages(), add_generation_prompt=True, tokenize=False)
    inputs = processor(text=prompt, images=[image], return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    # 100x60 -> 2x2 tiles of 64 px + the global image, 16 tokens each.
    assert tuple(inputs["pixel_values"].shape) == (1, 5, 3, 64, 64)
    assert ids.count(model.config.image_token_id) == 5 * 16
    assert ids.count(processor.tokenizer.convert_tokens_to_ids("<row_2_col_2>")) == 1
    _generate(model, inputs)


def test_llava(llava_path, image):
    processor = AutoProcessor.from_pretrained(llava_path)
    model = AutoModelForImageTextToText.from_pretrained(llava_path)
    assert type(processor).__name__ == "LlavaProcessor"
    assert type(processor.image_processor).__name__ == "CLIPImageProcessorPil"
    assert type(model).__name__ == "LlavaForConditionalGeneration"

    tok = processor.tokenizer
    assert tok.eos_token == "</s>"
    assert model.generation_config.eos_token_id == tok.eos_token_id
    image_id = tok.convert_tokens_to_ids("<image>")
    assert model.config.image_token_id == image_id
    assert tok.decode(tok(ODD_TEXT, add_special_tokens=False)["input_ids"]) == ODD_TEXT

    prompt = processor.apply_chat_template(_vlm_messages(), add_generation_prompt=True, tokenize=False)
    assert prompt == "You are helpful. USER: <image>\nWhat is this? ASSISTANT:"
    inputs = processor(text=prompt, images=[image], return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    assert ids[0] == tok.bos_token_id
    assert ids.count(image_id) == tiny_models.LLAVA_IMAGE_SEQ_LEN == 16
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 32, 32)
    _generate(model, inputs)


def test_causal_lm(causal_lm_path):
    tok = AutoTokenizer.from_pretrained(causal_lm_path)
    model = AutoModelForCausalLM.from_pretrained(causal_lm_path)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    # No processor files: AutoProcessor falls back to the tokenizer.
    assert type(AutoProcessor.from_pretrained(causal_lm_path)) is type(tok)

    assert tok.eos_token == "<|im_end|>"
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert tok.decode(tok(ODD_TEXT)["input_ids"]) == ODD_TEXT

    expected = (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    )
    for content in ("Hi there", [{"type": "text", "text": "Hi there"}]):
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}]
        assert tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == expected

    enc = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    _generate(model, enc)
