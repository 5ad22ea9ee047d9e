"""The conversation as shown (failed turns too, which edit and regenerate need) and what
the model sees of it."""

from __future__ import annotations

from dataclasses import dataclass

from assistant.generators.base import ChatMessage


def with_view_labels(text: str, meta: dict | None) -> str:
    """The question as the model sees it: with what is in view when it was asked, if known."""
    seen = (meta or {}).get("view_labels")
    if not seen:
        return text
    from assistant.fusion.view_labels import describe

    return f"{text}\n\n(The camera sees: {describe([(label, score) for label, score in seen])}.)".lstrip()


@dataclass
class Said:
    """A message of the conversation as shown, with what answering it again or editing it needs."""

    role: str  # "user" | "assistant"
    turn_id: int  # the front end's: a live turn's id, or ``StoredMessage.turn_id`` when reopened
    message: ChatMessage  # what the model sees of it (a question's images and camera frames included)
    stored_id: int | None = None  # in the history (None: not saved)
    failed: bool = False  # a reply that failed: neither it nor its question is part of the model's context


def model_context(said: list[Said]) -> list[ChatMessage]:
    """What the model sees of a conversation: failed turns left out, and an unanswered
    question at the end (the app was killed before the reply began)."""
    history: list[ChatMessage] = []
    for entry in said:
        if entry.role == "assistant" and entry.failed:
            if history and history[-1].role == "user":
                history.pop()  # a failed turn was never part of what the model saw
            continue
        history.append(entry.message)
    while history and history[-1].role == "user":
        history.pop()
    return history

