"""A server's failures and malformed replies, worded for the user.

``explain`` turns whatever the ``openai`` client raised (a refused connection, a
timeout, an HTTP status, a reply that is not what the OpenAI API describes) into
one sentence; ``chunk_text`` and ``json_of`` check the shape of what arrives.
"""

from __future__ import annotations

import json
import re
from typing import Any

from assistant.generators.base import PromptTooLongError
from assistant.secrets import scrub

# Sent when no key is configured: local servers (vLLM without --api-key, Ollama,
# llama.cpp) ignore it, and a server that needs a key answers 401, which we explain.
NO_KEY = "no-key"

# How servers word "the prompt does not fit": vLLM, llama.cpp, OpenAI, TGI, LM Studio.
_CONTEXT_WORDS = re.compile(
    r"context (length|window|size)|maximum context|n_ctx|too many tokens|prompt is too long|"
    r"input is too long|exceeds? the (model'?s? )?(maximum|max)|max_model_len|maximum input length",
    re.I,
)


class ServerError(Exception):
    """Internal: a failure already worded for the user, and whether it was a lost connection."""


class UnreadableReply(Exception):
    """Internal: a reply that is not what the OpenAI API describes; ``str()`` says how, in a few words."""


_HTML = re.compile(r"\s*<(!doctype|html|head|body)\b", re.I)


def describe_body(text: str) -> str:
    """A few words on a body that should have been JSON: an HTML page by its title, else how it starts."""
    if _HTML.match(text):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
        return f"an HTML page titled '{' '.join(title.group(1).split())[:80]}'" if title else "an HTML page"
    start = " ".join(text.split())
    if not start:
        return "an empty reply"
    return f"data that is not valid JSON: '{start[:60]}{'…' if len(start) > 60 else ''}'"


def json_of(response: Any) -> Any:
    """The JSON body of an HTTP response, or ``UnreadableReply`` saying what came instead."""
    try:
        return json.loads(response.text)
    except ValueError:
        raise UnreadableReply(describe_body(response.text)) from None


def chunk_text(chunk: Any) -> tuple[str, bool]:
    """The text a streamed chunk adds and whether it ends the reply.

    The ``openai`` client builds chunks from whatever JSON arrives without checking
    it, so the shape is checked here: ``UnreadableReply`` when it is not a chat chunk.
    """
    import openai

    given = getattr(chunk, "model_fields_set", ())  # the fields the JSON had (a missing one reads as None)
    if "choices" not in given or not isinstance(chunk.choices or [], list):
        raise UnreadableReply("an event without a list of choices")
    text, finished = "", False
    for choice in chunk.choices or ():
        delta = getattr(choice, "delta", None)
        if not isinstance(choice, openai.BaseModel):
            raise UnreadableReply("a choice that is not an object")
        if not isinstance(delta, (openai.BaseModel, type(None))):
            raise UnreadableReply("a delta that is not an object")
        content = getattr(delta, "content", None)
        if not isinstance(content, (str, type(None))):
            raise UnreadableReply(f"reply text of type {type(content).__name__}")
        text += content or ""
        finished = finished or bool(getattr(choice, "finish_reason", None))
    return text, finished


def connection_reason(exc: BaseException) -> str:
    """The lowest-level cause of a connection failure, in a few words."""
    cause: BaseException | None = exc
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause or exc).strip()
    match = re.search(r"\[Errno -?\d+\]\s*(.+)", text)
    if match:
        text = match.group(1)
    return (text.splitlines()[0] if text else type(cause or exc).__name__)[:160]


def server_message(exc: Any) -> str:
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
        message = describe_body(body) if _HTML.match(body) else body
    if not message:
        message = getattr(exc, "message", "") or str(exc)
    message = " ".join(str(message).split())
    return message if len(message) <= 300 else message[:299] + "…"


def error_code(exc: Any) -> str:
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, dict) else None
    return str(error.get("code") or "") if isinstance(error, dict) else ""


def explain(exc: BaseException, base_url: str, model: str, key: str | None, timeout: float) -> Exception:
    """A client-library exception as an exception whose text is fit for the user.

    Returns ``PromptTooLongError`` for a context overflow, else ``ServerError``.
    """
    import openai

    where = f"the server at {base_url}"
    if isinstance(exc, (UnreadableReply, json.JSONDecodeError)):
        detail = describe_body(exc.doc) if isinstance(exc, json.JSONDecodeError) else str(exc)
        text = f"{where.capitalize()} sent a reply this app cannot read ({detail})."
    elif isinstance(exc, openai.APITimeoutError):
        text = f"{where.capitalize()} did not answer within {timeout:g} seconds."
    elif isinstance(exc, openai.APIConnectionError):
        text = (
            f"Could not connect to {where} ({connection_reason(exc)}). "
            "Is the server running, and are the address and port right?"
        )
    elif isinstance(exc, openai.APIStatusError):
        status, message = exc.status_code, server_message(exc)
        if status == 400 and (_CONTEXT_WORDS.search(message) or error_code(exc) == "context_length_exceeded"):
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
        text = f"The request to {where} failed: {connection_reason(exc)}"
    else:
        text = f"The request to {where} failed: {type(exc).__name__}: {connection_reason(exc)}"
    return ServerError(scrub(text, key))
