"""What an OpenAI-compatible server says its model can do: whether it takes images.

Servers publish this differently, or not at all: llama.cpp (``/v1/models``
capabilities, ``GET /props`` modalities), Ollama (``POST /api/show``
capabilities), llama-cpp-python (nothing: a one-token probe finds out), vLLM and
OpenAI (nothing: unknown, and the request is sent as it is).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np

from assistant.encoders.images import encode_jpeg

# A capability probe is a small extra: a server that does not answer it at once is not waited for.
PROBE_TIMEOUT_S = 5.0


def takes_images(client: Any, base_url: str, model: str, listing: dict[str, Any]) -> bool | None:
    """From what each kind of server publishes, asked in turn; a route the server does
    not have (an HTTP 4xx) passes the question on, any other failure raises."""
    import openai

    def published(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except openai.APIStatusError as exc:
            if 400 <= exc.status_code < 500:
                return None
            raise

    # llama.cpp also lists its models Ollama-style, with "multimodal" among their capabilities
    # when a projector is loaded.  Only a yes counts: older versions always said ["completion"].
    for entry in listing.get("models") or ():
        if isinstance(entry, dict) and model in (entry.get("name"), entry.get("model")):
            if _vision_capability(entry.get("capabilities")):
                return True
    probe = client.with_options(timeout=PROBE_TIMEOUT_S, max_retries=0)
    root = base_url.removesuffix("/v1")
    # llama.cpp: GET /props says {"modalities": {"vision": bool, ...}}, for the model it serves.
    props = published(lambda: probe.get(f"{root}/props", cast_to=object))
    if props is not None:
        modalities = props.get("modalities") if isinstance(props, dict) else None
        vision = modalities.get("vision") if isinstance(modalities, dict) else None
        return vision if isinstance(vision, bool) else None
    # Ollama: POST /api/show lists the model's capabilities, "vision" among them when it sees.
    shown = published(lambda: probe.post(f"{root}/api/show", body={"model": model}, cast_to=object))
    if isinstance(shown, dict) and isinstance(shown.get("capabilities"), list) and shown["capabilities"]:
        return _vision_capability(shown["capabilities"])
    # llama-cpp-python (its model list says owned_by "me") publishes nothing of the kind.
    entry = next(entry for entry in listing["data"] if entry["id"] == model)
    if entry.get("owned_by") == "me":
        return _image_adds_tokens(probe, model)
    return None


def _image_adds_tokens(probe: Any, model: str) -> bool | None:
    """llama-cpp-python's text-only chat formats drop what they cannot render (the alpaca
    format drops the whole message).  One token is asked for with and without a tiny image:
    when the image adds no prompt tokens, the model never sees images (False); when it adds
    some, it may (None).  Only for this server: elsewhere it would cost a paid request."""
    question = "What is this?"

    def prompt_tokens(content: Any) -> int:
        reply = probe.chat.completions.create(model=model, messages=[{"role": "user", "content": content}],
                                              max_tokens=1, temperature=0.0)
        return int(reply.usage.prompt_tokens)

    tiny = "data:image/jpeg;base64," + base64.b64encode(encode_jpeg(np.full((8, 8, 3), 128, np.uint8))).decode("ascii")
    with_image = prompt_tokens([{"type": "image_url", "image_url": {"url": tiny}}, {"type": "text", "text": question}])
    return False if with_image <= prompt_tokens(question) else None


def _vision_capability(capabilities: Any) -> bool:
    """Whether a capability list names seeing: Ollama says "vision", llama.cpp "multimodal"."""
    return isinstance(capabilities, list) and ("vision" in capabilities or "multimodal" in capabilities)
