"""Loading the generator: the model the settings name, on the machine or on a server.

A switch to another model keeps the one in use until the new one is known to load.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from assistant.encoders.shared import EncoderChoice
from assistant.errors import AssistantError, Cancelled
from assistant.events import ErrorEvent, ErrorKind, ModelKept, State
from assistant.garbage import collect
from assistant.generators.base import BackendInfo, GeneratorBackend
from assistant.progress import Progress
from assistant.settings import GENERATOR_FIELDS, AppPaths, Settings

log = logging.getLogger(__name__)

BackendFactory = Callable[[Settings, AppPaths], GeneratorBackend]


def encoder_choice(settings: Settings) -> EncoderChoice:
    """The image search model the settings name."""
    return EncoderChoice(settings.search_model.strip(), settings.device, settings.offline)


def default_backend_factory(settings: Settings, paths: AppPaths) -> GeneratorBackend:
    """The generator the settings ask for: in-process ``transformers``, or an OpenAI-compatible server."""
    if settings.backend == "openai":
        from assistant.generators.openai_backend import OpenAIBackend
        from assistant.secrets import keys

        return OpenAIBackend(
            settings.base_url,
            settings.remote_model,
            api_key=keys.key_for(settings.base_url),
            timeout=settings.request_timeout,
            first_token_timeout=settings.first_token_timeout,
            stall_timeout=settings.stall_timeout,
            image_max_side=settings.remote_image_max_side,
        )
    from assistant.generators.transformers_backend import TransformersBackend

    return TransformersBackend(
        settings.model,
        settings.device,
        settings.dtype,
        cache_dir=paths.models,
        quantization=settings.quantization,
        offline=settings.offline,
    )


class ModelLoading:
    """The generator's life: load, unload, switch (a part of ``Engine``; runs in the pipeline thread)."""

    settings: Settings
    paths: AppPaths
    backend: GeneratorBackend | None
    info: BackendInfo | None
    _factory: BackendFactory
    _last_load_error: str | None

    def load(self, epoch: int | None = None, backend: GeneratorBackend | None = None) -> bool:
        """Load the model named in the settings (``backend``: one already made for them and
        prepared); report progress; never raise."""
        token = self.token(epoch)
        self.unload()
        self._status(State.LOADING, f"Loading {self.settings.generator_name}…")

        def on_progress(p: Progress) -> None:
            self._status(State.LOADING, p.detail, p.fraction)

        started = time.monotonic()
        try:
            backend = backend if backend is not None else self._factory(self.settings, self.paths)
            self.info = backend.load(on_progress, token)
            self.backend = backend
        except Cancelled:
            self._status(State.UNLOADED, "Loading was cancelled.")
            return False
        except AssistantError as exc:
            self._fail_load(str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 - a load must never take the pipeline down
            from assistant.devices.compute import is_out_of_memory, out_of_memory_message

            if is_out_of_memory(exc):
                message = out_of_memory_message(self.settings.generator_name, "loading")
            else:
                log.exception("model load failed")
                message = f"Could not load model '{self.settings.generator_name}': {exc}"
            self._fail_load(message)
            return False
        log.info("loaded %s on %s in %.1f s", self.info.model, self.info.device, time.monotonic() - started)
        self._status(State.READY, "Ready")
        return True

    def _fail_load(self, message: str) -> None:
        self._last_load_error = message
        self.info = None
        self._emit(ErrorEvent(message, ErrorKind.MODEL_LOAD))
        self._status(State.ERROR, message)

    def unload(self, announce: bool = False) -> None:
        """Drop the model (and the frame selector) and free their memory (the shared image
        search model stays: search and the view labels use it; ``encoder.close()`` frees it).

        Nothing in the engine keeps a reference to the old model: once this returns,
        its weights have been collected and GPU memory handed back to the driver (in the
        window the collection runs on the GUI thread, which this waits for, at most 2 s).
        ``announce``: say so in a status event (the user asked to unload).
        """
        had_model = self.backend is not None
        backend, self.backend = self.backend, None
        self.info = None
        if backend is not None:
            backend.unload()
            del backend
        selector, self._selector, self._selector_key = self._selector, None, None
        relevance = getattr(selector, "relevance", None)
        if relevance is not None and hasattr(relevance, "close"):
            relevance.close()
        del selector, relevance
        collect()
        if announce:
            detail = "Model unloaded; the next question loads it again." if had_model else "No model was loaded."
            self._status(State.UNLOADED, detail)


    def apply_settings(self, settings: Settings, epoch: int | None = None, reload: bool = False) -> bool:
        """Use new settings; reload the model when anything it depends on changed
        (or when ``reload`` says so: a new API key for the same server)."""
        switch = settings.generator_key() != self.settings.generator_key()
        old, self.settings = self.settings, settings
        self.encoder.configure(encoder_choice(settings))
        if self._recognizer_key not in (None, (settings.asr_model, settings.device, settings.asr_language)):
            self.unload_recognizer()  # a different speech model: the next utterance loads it
        if switch and self.backend is not None:
            return self._switch(old, epoch)
        if reload or switch:
            return self.load(epoch)
        return True  # a model unloaded on purpose, or one that failed, stays so: the next question loads it

    def _switch(self, old: Settings, epoch: int | None) -> bool:
        """Another model while one is loaded: the one in use stays until the new one is known
        to load.  What can fail without memory (a mistyped name, a download, a server that does
        not answer) is tried first, with the old model still loaded; if the weights then fail to
        load, the old model is loaded again.  Either way ``ModelKept`` says so."""
        token = self.token(epoch)
        name = self.settings.generator_name
        self._status(State.LOADING, f"Getting {name} ready (the model in use stays until it is)…")

        def on_progress(p: Progress) -> None:
            self._status(State.LOADING, p.detail, p.fraction)

        try:
            candidate = self._factory(self.settings, self.paths)
            prepare = getattr(candidate, "prepare", None)  # (a backend made for tests may have none)
            if prepare is not None:
                prepare(on_progress, token)
        except Cancelled:
            self._keep(old, f"Switching to {name} was cancelled.", failed=False)
            return False
        except Exception as exc:  # noqa: BLE001 - whatever it is, the model in use stays
            if not isinstance(exc, AssistantError):
                log.exception("preparing %s failed", name)
            self._keep(old, str(exc) if isinstance(exc, AssistantError) else f"Could not load model '{name}': {exc}")
            return False
        if self.load(epoch, backend=candidate):
            return True
        failed = self._last_load_error or f"Could not load model '{name}'."
        self.settings = old
        self._emit(ModelKept(tuple((f, getattr(old, f)) for f in GENERATOR_FIELDS),
                             f"{failed} Loading {old.generator_name} again."))
        self.load(epoch)
        return False

    def _keep(self, old: Settings, message: str, failed: bool = True) -> None:
        """The switch failed before anything was unloaded: say why; the model in use stays."""
        self.settings = self.settings.replace(**{f: getattr(old, f) for f in GENERATOR_FIELDS})
        kept = f"{message} Still using {old.generator_name}."
        self._emit(ModelKept(tuple((f, getattr(old, f)) for f in GENERATOR_FIELDS), kept))
        if failed:
            self._emit(ErrorEvent(kept, ErrorKind.MODEL_LOAD))
        self._status(State.READY, "Ready")

