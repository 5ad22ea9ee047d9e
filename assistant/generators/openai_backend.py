"""A generator that is a client of an OpenAI-compatible server (vLLM, Ollama, llama.cpp server).

Chat completions are streamed with the official ``openai`` client.  Images go
inline as ``image_url`` data URLs (JPEG, shrunk to ``image_max_side``).  Stop is
checked between chunks, and a small watcher closes the connection under a read
that is still waiting for the server (a long prompt being processed), so Stop
takes effect at once and the server stops generating for a client that left.

Every failure becomes one clear sentence (``ModelLoadError`` while connecting,
``GenerationError`` while answering, ``PromptTooLongError`` when the server says
the conversation is too long for its context window), a reply that is not what
the OpenAI API describes included; the API key is scrubbed from anything shown.

Before the first question with images, the backend finds out whether the model
takes images from what the server publishes (``OpenAIBackend.takes_images``): a
text-only model would answer as if no image had been given.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from assistant.errors import BadInputError, Cancelled, GenerationError, ModelLoadError
from assistant.encoders.images import encode_jpeg
from assistant.secrets import scrub
from assistant.generators.base import (
    BackendInfo,
    ChatMessage,
    GenerationParams,
    GenerationResult,
    GeneratorBackend,
    PromptTooLongError,
    TextCallback,
)
from assistant.progress import CancelToken, Progress, ProgressCallback

log = logging.getLogger(__name__)
T = TypeVar("T")

# Sent when no key is configured: local servers (vLLM without --api-key, Ollama,
# llama.cpp) ignore it, and a server that needs a key answers 401, which we explain.
NO_KEY = "no-key"

# How servers word "the prompt does not fit": vLLM, llama.cpp, OpenAI, TGI, LM Studio.
_CONTEXT_WORDS = re.compile(
    r"context (length|window|size)|maximum context|n_ctx|too many tokens|prompt is too long|"
    r"input is too long|exceeds? the (model'?s? )?(maximum|max)|max_model_len|maximum input length",
    re.I,
)


# A capability probe is a small extra: a server that does not answer it at once is not waited for.
PROBE_TIMEOUT_S = 5.0


class _ServerError(Exception):
    """Internal: a failure already worded for the user, and whether it was a lost connection."""


class _UnreadableReply(Exception):
    """Internal: a reply that is not what the OpenAI API describes; ``str()`` says how, in a few words."""


_HTML = re.compile(r"\s*<(!doctype|html|head|body)\b", re.I)


def _describe(text: str) -> str:
    """A few words on a body that should have been JSON: an HTML page by its title, else how it starts."""
    if _HTML.match(text):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
        return f"an HTML page titled '{' '.join(title.group(1).split())[:80]}'" if title else "an HTML page"
    start = " ".join(text.split())
    if not start:
        return "an empty reply"
    return f"data that is not valid JSON: '{start[:60]}{'…' if len(start) > 60 else ''}'"


def _json_of(response: Any) -> Any:
    """The JSON body of an HTTP response, or ``_UnreadableReply`` saying what came instead."""
    try:
        return json.loads(response.text)
    except ValueError:
        raise _UnreadableReply(_describe(response.text)) from None


def _chunk_text(chunk: Any) -> tuple[str, bool]:
    """The text a streamed chunk adds and whether it ends the reply.

    The ``openai`` client builds chunks from whatever JSON arrives without checking
    it, so the shape is checked here: ``_UnreadableReply`` when it is not a chat chunk.
    """
    import openai

    given = getattr(chunk, "model_fields_set", ())  # the fields the JSON had (a missing one reads as None)
    if "choices" not in given or not isinstance(chunk.choices or [], list):
        raise _UnreadableReply("an event without a list of choices")
    text, finished = "", False
    for choice in chunk.choices or ():
        delta = getattr(choice, "delta", None)
        if not isinstance(choice, openai.BaseModel):
            raise _UnreadableReply("a choice that is not an object")
        if not isinstance(delta, (openai.BaseModel, type(None))):
            raise _UnreadableReply("a delta that is not an object")
        content = getattr(delta, "content", None)
        if not isinstance(content, (str, type(None))):
            raise _UnreadableReply(f"reply text of type {type(content).__name__}")
        text += content or ""
        finished = finished or bool(getattr(choice, "finish_reason", None))
    return text, finished


def _reason(exc: BaseException) -> str:
    """The lowest-level cause of a connection failure, in a few words."""
    cause: BaseException | None = exc
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause or exc).strip()
    match = re.search(r"\[Errno -?\d+\]\s*(.+)", text)
    if match:
        text = match.group(1)
    return (text.splitlines()[0] if text else type(cause or exc).__name__)[:160]


def _server_message(exc: Any) -> str:
    """The ``message`` of an OpenAI-style error body (or of a plain body), shortened."""
    body = getattr(exc, "body", None)
    message = ""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            message = str(error.get("message") or error.get("detail") or "")
        elif isinstance(error, str):
            message = error
        if not message and "detail" in body:
            message = str(body["detail"])
    elif isinstance(body, str):
        message = _describe(body) if _HTML.match(body) else body
    if not message:
        message = getattr(exc, "message", "") or str(exc)
    message = " ".join(str(message).split())
    return message if len(message) <= 300 else message[:299] + "…"


def _error_code(exc: Any) -> str:
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, dict) else None
    return str(error.get("code") or "") if isinstance(error, dict) else ""


def explain(exc: BaseException, base_url: str, model: str, key: str | None, timeout: float) -> Exception:
    """A client-library exception as an exception whose text is fit for the user.

    Returns ``PromptTooLongError`` for a context overflow, else ``_ServerError``.
    """
    import openai

    where = f"the server at {base_url}"
    if isinstance(exc, (_UnreadableReply, json.JSONDecodeError)):
        detail = _describe(exc.doc) if isinstance(exc, json.JSONDecodeError) else str(exc)
        text = f"{where.capitalize()} sent a reply this app cannot read ({detail})."
    elif isinstance(exc, openai.APITimeoutError):
        text = f"{where.capitalize()} did not answer within {timeout:g} seconds."
    elif isinstance(exc, openai.APIConnectionError):
        text = (
            f"Could not connect to {where} ({_reason(exc)}). "
            "Is the server running, and are the address and port right?"
        )
    elif isinstance(exc, openai.APIStatusError):
        status, message = exc.status_code, _server_message(exc)
        if status == 400 and (_CONTEXT_WORDS.search(message) or _error_code(exc) == "context_length_exceeded"):
            return PromptTooLongError(scrub(message, key))
        if status == 401:
            hint = "Set the right key in Settings… or OPENAI_API_KEY." if key and key != NO_KEY else (
                "It needs an API key: set one in Settings… or OPENAI_API_KEY.")
            text = f"{where.capitalize()} refused the API key (401 Unauthorized). {hint}"
        elif status == 403:
            text = f"{where.capitalize()} denied access (403 Forbidden): {message}"
        elif status == 404:
            text = (
                f"{where.capitalize()} answered 404 Not Found ({message}). Check the model name '{model}', "
                "and that the base URL ends in /v1."
            )
        elif status == 429:
            text = f"{where.capitalize()} is rate-limiting requests (429 Too Many Requests): try again in a moment."
        elif status >= 500:
            text = f"{where.capitalize()} failed with an internal error ({status}): {message}"
        else:
            text = f"{where.capitalize()} rejected the request ({status}): {message}"
    elif isinstance(exc, openai.OpenAIError):
        text = f"The request to {where} failed: {_reason(exc)}"
    else:
        text = f"The request to {where} failed: {type(exc).__name__}: {_reason(exc)}"
    return _ServerError(scrub(text, key))


def _make_client(base_url: str, key: str | None, timeout: float):
    import openai

    # Our own retries (bounded, cancellable, connect errors only): none in the client.
    return openai.OpenAI(base_url=base_url, api_key=key or NO_KEY, timeout=timeout, max_retries=0)


def _model_listing(client: Any) -> dict[str, Any]:
    """``GET /v1/models`` as JSON, checked: a ``data`` list of entries with a string ``id``."""
    listing = _json_of(client.models.with_raw_response.list().http_response)
    entries = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("id"), str) for e in entries):
        raise _UnreadableReply("a model list without the models' names")
    return listing


def list_models(base_url: str, api_key: str | None = None, timeout: float = 10.0) -> list[str]:
    """The model names the server at ``base_url`` serves (``GET /v1/models``), sorted.

    Raises ``ModelLoadError`` with a clear message when the server cannot be asked.
    """
    client = _make_client(base_url, api_key, timeout)
    try:
        return sorted(entry["id"] for entry in _model_listing(client)["data"])
    except Exception as exc:  # noqa: BLE001 - every failure becomes one sentence
        raise ModelLoadError(str(explain(exc, base_url, "", api_key, timeout))) from None
    finally:
        client.close()


def image_data_url(image: Image.Image, max_side: int) -> str:
    """An image as a ``data:image/jpeg;base64,...`` URL, no side longer than ``max_side``."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if max(rgb.size) > max_side:
        rgb = rgb.copy()
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return "data:image/jpeg;base64," + base64.b64encode(encode_jpeg(np.asarray(rgb))).decode("ascii")


class _DataUrlCache:
    """Encoded images by identity: a history image is encoded once, not on every turn."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._items: dict[int, tuple[weakref.ref, int, str]] = {}

    def get(self, image: Image.Image, max_side: int) -> str:
        hit = self._items.get(id(image))
        if hit is not None and hit[0]() is image and hit[1] == max_side:
            return hit[2]
        url = image_data_url(image, max_side)
        if len(self._items) >= self.size:
            self._items.pop(next(iter(self._items)))
        self._items[id(image)] = (weakref.ref(image), max_side, url)
        return url


def _socket_of(response: Any) -> socket.socket | None:
    """The socket under a streaming response, when the HTTP library exposes it."""
    try:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
    except Exception:  # noqa: BLE001 - only an optimisation: polling between chunks still works
        return None
    return sock if isinstance(sock, socket.socket) else None


class _StreamWatcher:
    """Shuts the connection down when the reply must end, waking a blocked read:
    at once on Stop (``cancel``), and when the server keeps the connection open but
    sends no words: none within ``first_s`` of the request, or none for ``stall_s``
    in the middle of a reply.  Keep-alive lines do not count as words, and the
    client's own timeout (between reads) never fires while they flow.

    A thread per request, joined when the request ends.  Without it, Stop would
    wait for the server's next chunk (seconds while it processes a long prompt).
    """

    POLL_S = 0.02

    def __init__(self, response: Any, cancel: CancelToken, first_s: float, stall_s: float, started: float) -> None:
        self.fired = False
        self.timed_out: str | None = None  # "first" or "stall" when a deadline ended the stream
        self._sock = _socket_of(response)
        self._cancel = cancel
        self._first_s, self._stall_s = first_s, stall_s
        self._started = started
        self._last_word: float | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        if self._sock is not None:
            self._thread = threading.Thread(target=self._run, name="openai-stream-watcher")
            self._thread.start()

    def word(self) -> None:
        """The reading thread: some of the reply arrived."""
        self._last_word = time.monotonic()

    def _run(self) -> None:
        while not self._done.wait(self.POLL_S):
            now = time.monotonic()
            if self._cancel.cancelled:
                self.fired = True
            elif self._last_word is None and now - self._started > self._first_s:
                self.timed_out = "first"
            elif self._last_word is not None and now - self._last_word > self._stall_s:
                self.timed_out = "stall"
            else:
                continue
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed
            return

    def close(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class OpenAIBackend(GeneratorBackend):
    """Streams chat completions from an OpenAI-compatible server."""

    def __init__(
        self,
        base_url: str,
        model: str = "",
        api_key: str | None = None,
        timeout: float = 60.0,
        image_max_side: int = 1024,
        first_token_timeout: float = 180.0,
        stall_timeout: float = 60.0,
        connect_attempts: int = 4,
        backoff_s: float = 0.5,
    ) -> None:
        self.base_url = base_url.strip().rstrip("/")
        self.model = model.strip()
        self._key = api_key or None
        self.timeout = float(timeout)
        self.first_token_timeout = float(first_token_timeout)
        self.stall_timeout = float(stall_timeout)
        self.image_max_side = image_max_side
        self.connect_attempts = max(1, connect_attempts)
        self.backoff_s = backoff_s
        self.client: Any = None
        self.info: BackendInfo | None = None
        self.extra_body: dict[str, Any] = {}  # server-specific request fields (e.g. top_k, repeat_penalty)
        self._images = _DataUrlCache()
        self._listing: dict[str, Any] = {}  # what GET /v1/models said at load
        self._takes_images: bool | None = None  # once known: see takes_images()
        self._asked_about_images = False

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIBackend({self.base_url!r}, model={self.model!r})"

    # -- helpers ---------------------------------------------------------------------

    def _explain(self, exc: BaseException) -> Exception:
        return explain(exc, self.base_url, self.model, self._key, self.timeout)

    def _with_retries(self, call: Callable[[], T], cancel: CancelToken) -> T:
        """``call()``, again after a pause when the server could not be reached at all.

        Bounded (``connect_attempts``), backing off (0.5 s, 1 s, 2 s …), and the
        pauses end at once on Stop (``Cancelled``).  Timeouts and HTTP errors are
        not retried: the server is there and said something.
        """
        import openai

        delay = self.backoff_s
        for attempt in range(1, self.connect_attempts + 1):
            if cancel.cancelled:
                raise Cancelled("Cancelled.")
            try:
                return call()
            except openai.APITimeoutError:
                raise
            except openai.APIConnectionError as exc:
                if attempt == self.connect_attempts:
                    raise
                log.info("%s unreachable (%s); retry %d in %.1f s", self.base_url, _reason(exc), attempt, delay)
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    if cancel.cancelled:
                        raise Cancelled("Cancelled.") from None
                    time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                delay *= 2
        raise AssertionError("unreachable")

    # -- the backend interface -------------------------------------------------------------

    def load(self, progress: ProgressCallback, cancel: CancelToken) -> BackendInfo:
        progress(Progress("load", None, f"Connecting to {self.base_url}…"))
        self.unload()
        client = _make_client(self.base_url, self._key, self.timeout)
        try:
            try:
                listing = self._with_retries(lambda: _model_listing(client), cancel)
            except Cancelled:
                raise
            except Exception as exc:  # noqa: BLE001
                raise ModelLoadError(str(self._explain(exc))) from None
            served = listing["data"]
            names = sorted(entry["id"] for entry in served)
            if not self.model:
                if len(names) != 1:
                    listed = ", ".join(names[:12]) or "none"
                    raise ModelLoadError(
                        f"Choose a model: the server at {self.base_url} serves {len(names)} models ({listed})."
                    )
                self.model = names[0]
            elif self.model not in names:
                listed = ", ".join(names[:12]) + (" …" if len(names) > 12 else "")
                raise ModelLoadError(
                    f"The server at {self.base_url} has no model named '{self.model}'. "
                    f"It serves: {listed or 'no models'}."
                )
        except BaseException:
            client.close()
            raise
        self.client = client
        self._listing = listing
        entry = next(entry for entry in served if entry["id"] == self.model)
        self.info = BackendInfo(
            model=self.model,
            device=self.base_url,
            dtype="server",
            supports_images=True,  # the server decides; takes_images() finds out before images are sent
            context_length=_context_length(entry),
        )
        return self.info

    def takes_images(self) -> bool | None:
        """Whether the server's model takes images: True, False, or None when the server does
        not say (vLLM, OpenAI: the request is sent and the server decides).

        Found out once a connection (``load``), on the first question with images; a probe
        that fails (no answer within ``PROBE_TIMEOUT_S``, a reply that cannot be read)
        leaves it unknown, never an error.
        """
        if not self._asked_about_images:
            try:
                self._takes_images = self._find_out_whether_it_takes_images()
            except Exception as exc:  # noqa: BLE001 - a probe that fails says nothing
                log.info("%s: whether '%s' takes images is unknown (%s)", self.base_url, self.model, _reason(exc))
                self._takes_images = None
            self._asked_about_images = True
        return self._takes_images

    def _find_out_whether_it_takes_images(self) -> bool | None:
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
        for entry in self._listing.get("models") or ():
            if isinstance(entry, dict) and self.model in (entry.get("name"), entry.get("model")):
                if _vision_capability(entry.get("capabilities")):
                    return True
        probe = self.client.with_options(timeout=PROBE_TIMEOUT_S, max_retries=0)
        root = self.base_url.removesuffix("/v1")
        # llama.cpp: GET /props says {"modalities": {"vision": bool, ...}}, for the model it serves.
        props = published(lambda: probe.get(f"{root}/props", cast_to=object))
        if props is not None:
            modalities = props.get("modalities") if isinstance(props, dict) else None
            vision = modalities.get("vision") if isinstance(modalities, dict) else None
            return vision if isinstance(vision, bool) else None
        # Ollama: POST /api/show lists the model's capabilities, "vision" among them when it sees.
        shown = published(lambda: probe.post(f"{root}/api/show", body={"model": self.model}, cast_to=object))
        if isinstance(shown, dict) and isinstance(shown.get("capabilities"), list) and shown["capabilities"]:
            return _vision_capability(shown["capabilities"])
        # llama-cpp-python (its model list says owned_by "me") publishes nothing of the kind.
        entry = next(entry for entry in self._listing["data"] if entry["id"] == self.model)
        if entry.get("owned_by") == "me":
            return self._image_adds_tokens(probe)
        return None

    def _image_adds_tokens(self, probe: Any) -> bool | None:
        """llama-cpp-python's text-only chat formats drop what they cannot render (the alpaca
        format drops the whole message).  One token is asked for with and without a tiny image:
        when the image adds no prompt tokens, the model never sees images (False); when it adds
        some, it may (None).  Only for this server: elsewhere it would cost a paid request."""
        question = "What is this?"

        def prompt_tokens(content: Any) -> int:
            reply = probe.chat.completions.create(model=self.model, messages=[{"role": "user", "content": content}],
                                                  max_tokens=1, temperature=0.0)
            return int(reply.usage.prompt_tokens)

        tiny = image_data_url(Image.new("RGB", (8, 8), (128, 128, 128)), 8)
        with_image = prompt_tokens([{"type": "image_url", "image_url": {"url": tiny}}, {"type": "text", "text": question}])
        return False if with_image <= prompt_tokens(question) else None

    def request_messages(self, messages: Sequence[ChatMessage], detail: str = "auto") -> list[dict[str, Any]]:
        """The chat in the OpenAI wire format: text as a string, images as data-URL parts
        with the image ``detail`` (``auto`` leaves the choice to the server)."""
        out: list[dict[str, Any]] = []
        for message in messages:
            if message.images:
                parts: list[dict[str, Any]] = [
                    {"type": "image_url", "image_url": {"url": self._images.get(image, self.image_max_side), "detail": detail}}
                    for image in message.images
                ]
                if message.text:
                    parts.append({"type": "text", "text": message.text})
                out.append({"role": message.role, "content": parts})
            else:
                out.append({"role": message.role, "content": message.text})
        return out

    def generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        on_text: TextCallback,
        cancel: CancelToken,
    ) -> GenerationResult:
        import openai

        if self.client is None:
            raise GenerationError("The server connection is not open: load the model first.")
        if cancel.cancelled:
            return GenerationResult("", 0, True)
        if messages and messages[-1].images and self.takes_images() is False:
            raise BadInputError(f"The server's model '{self.model}' does not accept images; "
                                "choose a vision model or ask without the image.")
        body = self.request_messages(messages, params.image_detail)
        client = self.client

        def start():
            return client.chat.completions.create(
                model=self.model,
                messages=body,
                stream=True,
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                extra_body=self.extra_body or None,
            )

        started = time.monotonic()
        try:
            stream = self._with_retries(start, cancel)
        except Cancelled:
            return GenerationResult("", 0, True)
        except Exception as exc:  # noqa: BLE001
            if cancel.cancelled:
                return GenerationResult("", 0, True)
            raise self._failure(exc) from None

        parts: list[str] = []
        chunks = 0
        finished = False
        watcher = _StreamWatcher(stream.response, cancel, self.first_token_timeout, self.stall_timeout, started)
        try:
            if "text/html" in stream.response.headers.get("content-type", ""):  # a proxy's or a portal's page
                raise _UnreadableReply(_describe(stream.response.read().decode("utf-8", "replace")))
            for chunk in stream:
                if cancel.cancelled:
                    break
                text, ends = _chunk_text(chunk)
                if text:
                    watcher.word()
                    chunks += 1
                    parts.append(text)
                    on_text(text)
                finished = finished or ends
        except Exception as exc:  # noqa: BLE001
            if cancel.cancelled or watcher.fired:
                return GenerationResult("".join(parts), chunks, True)
            if watcher.timed_out is not None:
                raise GenerationError(self._gave_up(watcher.timed_out, parts)) from None
            if isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError):
                if not parts:
                    self._diagnose(body)
                raise GenerationError(self._lost(parts)) from None
            raise self._failure(exc, parts) from None
        finally:
            watcher.close()
            stream.close()  # at once: the server sees the client leave and stops generating
        if cancel.cancelled:
            return GenerationResult("".join(parts), chunks, True)
        if watcher.timed_out is not None:  # the shutdown may end the stream without an error
            raise GenerationError(self._gave_up(watcher.timed_out, parts))
        if not finished:
            if not parts:
                self._diagnose(body)
            raise GenerationError(self._lost(parts))
        return GenerationResult("".join(parts), chunks, False)

    def _gave_up(self, why: str, parts: list[str]) -> str:
        if why == "first":
            return (f"The server at {self.base_url} sent no answer within {self.first_token_timeout:g} s (it kept the "
                    "connection open without a word), so the question was given up. It may be overloaded or stuck; "
                    "try again, or allow it longer in Settings….")
        return (f"The server at {self.base_url} stopped sending the answer for {self.stall_timeout:g} s, so it was "
                f"given up{'; the part received is kept' if parts else ''}. Try again, or allow it longer in Settings….")

    def _diagnose(self, body: list[dict[str, Any]]) -> None:
        """Why did a stream end before its first chunk?  Some servers (llama-cpp-python)
        check the prompt's length only once streaming has begun, and then just hang up.
        Asked once more without streaming (one token), they answer with a proper 400:
        raise ``PromptTooLongError`` when that is it; otherwise return."""
        import openai

        for _attempt in range(2):  # the first may meet the connection the server just dropped
            try:
                self.client.chat.completions.create(model=self.model, messages=body, max_tokens=1, temperature=0.0,
                                                    extra_body=self.extra_body or None)
                return
            except openai.APIStatusError as exc:
                explained = self._explain(exc)
                if isinstance(explained, PromptTooLongError):
                    raise explained from None
                return
            except openai.APITimeoutError:
                return
            except openai.APIConnectionError:
                continue
            except Exception:  # noqa: BLE001 - no diagnosis: "lost" is the answer
                return

    def _lost(self, parts: list[str]) -> str:
        kept = " The part received is kept." if parts else ""
        return f"The connection to the server at {self.base_url} was lost in the middle of the reply.{kept}"

    def _failure(self, exc: BaseException, parts: Sequence[str] = ()) -> Exception:
        explained = self._explain(exc)
        if isinstance(explained, PromptTooLongError):
            return explained
        text = str(explained)
        if parts:
            text += " The part received is kept."
        return GenerationError(text)

    def unload(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None
        self.info = None
        self._listing = {}
        self._takes_images, self._asked_about_images = None, False


def _vision_capability(capabilities: Any) -> bool:
    """Whether a capability list names seeing: Ollama says "vision", llama.cpp "multimodal"."""
    return isinstance(capabilities, list) and ("vision" in capabilities or "multimodal" in capabilities)


def _context_length(entry: dict[str, Any]) -> int | None:
    """The model's context window when the server says (vLLM: ``max_model_len``)."""
    for name in ("max_model_len", "context_length", "n_ctx", "max_context_length"):
        value = entry.get(name)
        if isinstance(value, int) and value > 0:
            return value
    meta = entry.get("meta")
    if isinstance(meta, dict):
        for name in ("n_ctx", "n_ctx_train"):
            value = meta.get(name)
            if isinstance(value, int) and value > 0:
                return value
    return None
