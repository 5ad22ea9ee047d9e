"""Conversations out of and into the store: JSON (everything, images included) and Markdown.

JSON is the app's own format (``EXPORT_FORMAT``), for backups and moving chats
between computers: ``export_json`` and ``import_json`` round-trip a conversation.
Markdown is for people: ``conversation_markdown`` writes it once, and both the
window's "Export…" (a folder with the images beside the .md file) and
``--export-chat … --format md`` (stdout, images linked where the history keeps
them) use it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import time
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from assistant.errors import HistoryError
from assistant.files import atomic_write
from assistant.store.history import HistoryStore
from assistant.store.records import (
    ROLES,
    STATUSES,
    StoredImage,
    check_text,
    derive_title,
    describe_os_error,
    dump_meta,
    prepare_image,
)

EXPORT_FORMAT = "multimodal-assistant.conversation"
EXPORT_VERSION = 1

HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System"}


# -- JSON -----------------------------------------------------------------------------------------


def export_json(store: HistoryStore, conv_id: int) -> dict[str, Any]:
    """The conversation as a JSON-ready dict, images included (base64)."""
    summary = store.get_conversation(conv_id)
    if summary is None:
        raise HistoryError(f"Conversation {conv_id} does not exist.")
    out_messages = []
    for message in store.messages(conv_id):
        images = []
        for image in message.images:
            try:
                data = image.path.read_bytes()
            except OSError as exc:
                raise HistoryError(
                    f"Could not export: image {image.path.name} is missing ({describe_os_error(exc)})."
                ) from None
            images.append(
                {
                    "sha256": image.sha256,
                    "ext": image.path.suffix.lstrip("."),
                    "data": base64.b64encode(data).decode("ascii"),
                }
            )
        out_messages.append(
            {
                "role": message.role,
                "text": message.text,
                "status": message.status,
                "created": message.created,
                "meta": message.meta,
                "images": images,
            }
        )
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "title": summary.title,
        "created": summary.created,
        "updated": summary.updated,
        "exported": time.time(),
        "messages": out_messages,
    }


def import_json(store: HistoryStore, data: Mapping[str, Any] | str | bytes) -> int:
    """Add an exported conversation as a new one; returns its id.

    Everything is validated before anything is written, and the import is one
    transaction: bad data raises ``HistoryError`` and leaves the store unchanged.
    """
    title, created, messages = _parse_export(data)
    return store.insert_conversation(title, created, messages)


def _parse_export(data: Mapping[str, Any] | str | bytes) -> tuple[str, float | None, list[dict[str, Any]]]:
    def bad(why: str) -> HistoryError:
        return HistoryError(f"This is not a conversation this app can import: {why}.")

    if isinstance(data, (str, bytes, bytearray)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise bad(f"it is not valid JSON ({exc})") from None
    if not isinstance(data, Mapping):
        raise bad("the top level is not a JSON object")
    if data.get("format") != EXPORT_FORMAT:
        raise bad(f"its format is {data.get('format')!r}, expected {EXPORT_FORMAT!r}")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad(f"its version {version!r} is not valid")
    if version > EXPORT_VERSION:
        raise bad(f"it was exported by a newer version of this app (format version {version})")

    def number(value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad(f"{where} is not a time")
        return float(value)

    title = data.get("title", "")
    if not isinstance(title, str):
        raise bad("the title is not text")
    created = number(data["created"], "its creation time") if data.get("created") is not None else None
    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list):
        raise bad("it has no list of messages")
    now = time.time()
    messages = []
    for i, m in enumerate(raw_messages, start=1):
        where = f"message {i}"
        if not isinstance(m, Mapping):
            raise bad(f"{where} is not an object")
        role, text, status = m.get("role"), m.get("text", ""), m.get("status", "complete")
        if role not in ROLES:
            raise bad(f"{where} has the role {role!r}")
        if not isinstance(text, str):
            raise bad(f"{where} has no text")
        text = check_text(text)
        if status not in STATUSES:
            raise bad(f"{where} has the status {status!r}")
        meta = m.get("meta") or {}
        if not isinstance(meta, Mapping):
            raise bad(f"{where} has meta that is not an object")
        try:
            meta_json = dump_meta(meta)
        except HistoryError as exc:
            raise bad(f"{where}: {exc}") from None
        raw_images = m.get("images") or []
        if not isinstance(raw_images, list):
            raise bad(f"{where} has images that are not a list")
        images = []
        for j, image in enumerate(raw_images, start=1):
            iwhere = f"image {j} of {where}"
            if not isinstance(image, Mapping) or not isinstance(image.get("data"), str):
                raise bad(f"{iwhere} has no data")
            try:
                blob = base64.b64decode(image["data"], validate=True)
            except (binascii.Error, ValueError):
                raise bad(f"{iwhere} is not valid base64") from None
            sha = image.get("sha256")
            if sha is not None and sha != hashlib.sha256(blob).hexdigest():
                raise bad(f"{iwhere} is damaged (its checksum does not match)")
            try:
                images.append(prepare_image(blob))
            except HistoryError:
                raise bad(f"{iwhere} is not an image") from None
        created_m = number(m["created"], f"{where}'s time") if m.get("created") is not None else now
        messages.append(
            {"role": role, "text": text, "status": status, "created": created_m, "meta": meta_json, "images": images}
        )
    if not title:
        first = next((m for m in messages if m["role"] == "user"), None)
        if first is not None:
            title = derive_title(first["text"], has_images=bool(first["images"]))
    return " ".join(title.split()), created, messages


# -- Markdown -------------------------------------------------------------------------------------

ImageLink = Callable[[StoredImage, int], "str | None"]


def conversation_markdown(store: HistoryStore, conv_id: int, image_link: ImageLink) -> str:
    """The conversation as Markdown.  ``image_link(image, n)`` gives the link of the
    message's n-th image (None when the image is missing)."""
    summary = store.get_conversation(conv_id)
    if summary is None:
        raise HistoryError(f"Conversation {conv_id} does not exist.")
    messages = store.messages(conv_id)
    count = f"{len(messages)} message{'s' if len(messages) != 1 else ''}"
    lines = [
        f"# {summary.title or 'Untitled conversation'}",
        "",
        f"*{count} · started {_fmt_time(summary.created)} · exported {_fmt_time(time.time())}*",
        "",
    ]
    for message in messages:
        lines += [f"## {HEADINGS.get(message.role, message.role.title())} · {_fmt_time(message.created)}", ""]
        if message.status == "stopped":
            lines += ["> *Stopped: this reply was interrupted and is incomplete.*", ""]
        elif message.status == "failed":
            error = message.meta.get("error") if isinstance(message.meta.get("error"), str) else ""
            lines += [f"> *Failed: this reply ended with an error{': ' + error if error else ''}.*", ""]
        if message.text.strip():
            lines += [message.text.rstrip(), ""]
        for n, image in enumerate(message.images, start=1):
            link = image_link(image, n)
            lines += [f"![image {n}]({link})" if link else f"*(image {n} is missing from the history folder)*", ""]
    return "\n".join(lines).rstrip() + "\n"


def linked_in_history(image: StoredImage, n: int) -> str | None:
    """Link an image where the history keeps it (``--export-chat … --format md``)."""
    return image.path.as_uri() if image.path.is_file() else None


def export_markdown(store: HistoryStore, conv_id: int, folder: Path) -> Path:
    """Write ``folder/<slug>.md`` with its images in ``folder/images/``; returns the .md path.

    An existing file of the same name is not overwritten: ``<slug>-2.md`` and so on.
    """
    folder = Path(folder)
    images_dir = folder / "images"

    def copy_image(image: StoredImage, n: int) -> str | None:
        try:
            data = image.path.read_bytes()
        except OSError:
            return None
        target = images_dir / image.path.name
        if not (target.is_file() and target.stat().st_size == len(data)):
            atomic_write(target, data)
        return f"images/{image.path.name}"

    try:
        text = conversation_markdown(store, conv_id, copy_image)
        summary = store.get_conversation(conv_id)
        stem = _slug(summary.title if summary else "", f"conversation-{conv_id}")
        path = folder / f"{stem}.md"
        n = 2
        while path.exists():
            path = folder / f"{stem}-{n}.md"
            n += 1
        atomic_write(path, text.encode("utf-8"))
    except OSError as exc:
        raise HistoryError(f"Could not export the conversation to {folder}: {describe_os_error(exc)}.") from None
    return path


def _slug(title: str, fallback: str) -> str:
    text = unicodedata.normalize("NFKC", title).casefold()
    slug = re.sub(r"[^\w]+", "-", text).strip("-_")[:60].strip("-_")
    return slug or fallback


def _fmt_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))
