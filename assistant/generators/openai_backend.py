"""A generator that is a client of an OpenAI-compatible server (vLLM, Ollama, llama.cpp server).

Chat completions are streamed with the official ``openai`` client.  Images go
inline as ``image_url`` data URLs (JPEG, shrunk to ``image_max_side``).  Stop is
checked between chunks, and a small watcher closes the connection under a read
that is still waiting for the server (a long prompt being processed), so Stop
takes effect at once and the server stops generating for a client that left.

Every failure becomes one clear sentence (``ModelLoadError`` while connecting,
``GenerationError`` while answering, ``PromptTooLongError`` when the server says
the conversation is too long for its context window), a reply that is not what
the OpenAI API describes included (worded in ``server_errors``); the API key is
scrubbed from anything shown.

Before the first question with images, the backend finds out whether the model
takes images from what the server publishes (``server_capabilities``): a
text-only model would answer as if no image had been given.
"""

from __future__ import annotations

import base64
import logging
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
from assistant.generators.server_capabilities import takes_images
from assistant.generators.server_errors import (
    NO_KEY,
    UnreadableReply,
    chunk_text,
    connection_reason,
    describe_body,
    explain,
    json_of,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


def _make_client(base_url: str, key: str | None, timeout: float):
    import openai

    # Our own retries (bounded, cancellable, connect errors only): none in the client.
    return openai.OpenAI(base_url=base_url, api_key=key or NO_KEY, timeout=timeout, max_retries=0)


def _model_listing(client: Any) -> dict[str, Any]:
    """``GET /v1/models`` as JSON, checked: a ``data`` list of entries with a string ``id``."""
    listing = json_of(client.models.with_raw_response.list().http_response)
    entries = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("id"), str) for e in entries):
        raise UnreadableReply("a model list without the models' names")
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
        self._prepared = False  # connected by ``prepare``: ``load`` has nothing left to do
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
                log.info("%s unreachable (%s); retry %d in %.1f s", self.base_url, connection_reason(exc), attempt, delay)
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    if cancel.cancelled:
                        raise Cancelled("Cancelled.") from None
                    time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                delay *= 2
        raise AssertionError("unreachable")

    # -- the backend interface -------------------------------------------------------------

    def prepare(self, progress: ProgressCallback, cancel: CancelToken) -> None:
        """Connecting and finding the model on the server takes no memory here: it is the whole load."""
        self.load(progress, cancel)
        self._prepared = True

    def load(self, progress: ProgressCallback, cancel: CancelToken) -> BackendInfo:
        if self._prepared and self.info is not None and self.client is not None:
            self._prepared = False
            return self.info
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
        that fails (no answer within ``server_capabilities.PROBE_TIMEOUT_S``, a reply that cannot be read)
        leaves it unknown, never an error.
        """
        if not self._asked_about_images:
            try:
                self._takes_images = takes_images(self.client, self.base_url, self.model, self._listing)
            except Exception as exc:  # noqa: BLE001 - a probe that fails says nothing
                log.info("%s: whether '%s' takes images is unknown (%s)", self.base_url, self.model, connection_reason(exc))
                self._takes_images = None
            self._asked_about_images = True
        return self._takes_images

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
                raise UnreadableReply(describe_body(stream.response.read().decode("utf-8", "replace")))
            for chunk in stream:
                if cancel.cancelled:
                    break
                text, ends = chunk_text(chunk)
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
