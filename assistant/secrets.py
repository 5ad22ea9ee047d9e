"""API keys for remote servers: in the system keyring, never in the settings file.

Keys are stored with ``keyring`` under the service ``multimodal-assistant``,
one per server (the normalized base URL is the user name).  When the system has
no usable keyring (a headless Linux box without Secret Service, say), a key is
kept in memory for this session only, and ``KeyStore.status()`` says so in a
sentence the window can show.

Every message that might carry a key (exception text from a client library)
goes through ``scrub`` before it is shown or logged.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

SERVICE = "multimodal-assistant"
ENV_KEY = "OPENAI_API_KEY"


def normalize_url(base_url: str) -> str:
    """The key a server's secret is filed under: scheme and host as typed, no trailing slash."""
    return base_url.strip().rstrip("/")


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with every given secret (of a plausible length) replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class KeyringStatus:
    usable: bool
    detail: str  # the backend's name, or why there is none (a sentence for the user)


class KeyStore:
    """Where API keys live: the system keyring, or this session's memory when there is none."""

    def __init__(self) -> None:
        self._memory: dict[str, str] = {}
        self._lock = threading.Lock()
        self._status: KeyringStatus | None = None

    def status(self) -> KeyringStatus:
        """Whether the system keyring can hold keys (checked once; cheap afterwards)."""
        if self._status is None:
            self._status = _probe_keyring()
        return self._status

    def known_status(self) -> KeyringStatus | None:
        """The keyring's status if it was checked already, else None; never probes (never blocks)."""
        return self._status

    def reset(self) -> None:
        """Forget this session's keys and re-check the keyring (tests install their own backend)."""
        with self._lock:
            self._memory.clear()
        self._status = None

    def get(self, base_url: str) -> str | None:
        """The key for the server at ``base_url``: this session's, else the keyring's, else None."""
        name = normalize_url(base_url)
        with self._lock:
            if name in self._memory:
                return self._memory[name] or None
        if not self.status().usable:
            return None
        try:
            import keyring

            return keyring.get_password(SERVICE, name) or None
        except Exception as exc:  # noqa: BLE001 - a broken keyring must not stop the app
            log.warning("keyring: could not read the key for %s: %s", name, type(exc).__name__)
            return None

    def remember(self, base_url: str, key: str) -> None:
        """Use ``key`` for this server from now on, in this session (instant, no I/O)."""
        with self._lock:
            self._memory[normalize_url(base_url)] = key

    def save(self, base_url: str, key: str) -> str | None:
        """Remember ``key`` and store it in the keyring (``""`` deletes it).

        Returns None when it was stored for good, or a warning for the user when it
        is kept for this session only.  May block on the keyring: not for the GUI thread.
        """
        name = normalize_url(base_url)
        self.remember(name, key)
        status = self.status()
        if not status.usable:
            return f"{status.detail} The API key is kept for this session only."
        try:
            import keyring
            from keyring.errors import PasswordDeleteError

            if key:
                keyring.set_password(SERVICE, name, key)
            else:
                try:
                    keyring.delete_password(SERVICE, name)
                except PasswordDeleteError:
                    pass  # there was none
        except Exception as exc:  # noqa: BLE001
            reason = scrub(str(exc), key) or type(exc).__name__
            log.warning("keyring: could not store the key for %s: %s", name, reason)
            return f"The system keyring could not store the API key ({reason}); it is kept for this session only."
        return None

    def key_for(self, base_url: str) -> str | None:
        """The key a client should send: ``OPENAI_API_KEY`` from the environment wins
        (an explicit choice for this run), then the stored key for this server."""
        return os.environ.get(ENV_KEY) or self.get(base_url)


def _probe_keyring() -> KeyringStatus:
    try:
        import keyring
        from keyring.backends import fail

        backend = keyring.get_keyring()
    except Exception as exc:  # noqa: BLE001 - keyring missing or broken: same outcome
        return KeyringStatus(False, f"No system keyring is available ({type(exc).__name__}).")
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 1) <= 0:
        return KeyringStatus(
            False, "No system keyring is available (install and unlock one, e.g. GNOME Keyring or KWallet)."
        )
    name = getattr(backend, "name", type(backend).__name__)
    return KeyringStatus(True, f"Keys are stored in the system keyring ({name}).")


# One store per process: the settings dialog puts keys here, the backend factory reads them.
keys = KeyStore()
