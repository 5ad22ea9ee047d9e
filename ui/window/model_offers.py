"""Errors from the engine, each said once; and when a model (the chat model or the
speech model) is missing because it is not downloaded yet, the chat offers the
download instead of repeating the error.

A part of ``MainWindow`` (``ui/main_window.py``), which it is mixed into: it uses the
window's widgets and bridges as attributes."""

from __future__ import annotations


from PySide6.QtCore import Slot

from assistant.models.hub import looks_like_path
from assistant.events import ErrorEvent, ErrorKind

from ui.workers.models import ModelsBridge


_MODELS_HINT = "Choose another model or device with Models… (Ctrl+Shift+M)."


class ModelOffers:
    @property
    def _pending_checks(self) -> dict:
        """Errors waiting for the models thread to say whether their model is downloaded, by 'speech'."""
        if self._checks is None:
            self._checks = {}
        return self._checks

    @Slot(object)
    def on_error(self, error: ErrorEvent) -> None:
        """One message per failure: a load that failed for a question is said in its reply; a model
        or speech model that is not downloaded is said once, with its download offered."""
        if self._held_load_error is not None and not self.bridge.busy:
            self._show_error_notice(self._held_load_error)  # never lost (no reply came to say it)
            self._held_load_error = None
        message = self.chat.message("assistant", error.turn_id) if error.turn_id is not None else None
        if message is None:
            if error.turn_id is None and error.kind is ErrorKind.MODEL_LOAD and self.bridge.busy:
                self._held_load_error = error  # the question waiting for this load says why it failed
                return
            if error.turn_id is None and self._check_missing_model(error):
                return
            self._show_error_notice(error)
            return
        text = error.message
        held, self._held_load_error = self._held_load_error, None
        if held is not None and error.kind is ErrorKind.MODEL_LOAD:
            if held.message == self._last_load_notice:
                text = f"{error.message} Why is said above."
            else:
                text = f"{error.message.rstrip('.')}: {held.message} {_MODELS_HINT}"
        if error.partial_text and message.text != error.partial_text:
            message.set_text(error.partial_text)
        message.finish("failed", text)

    def _show_error_notice(self, error: ErrorEvent) -> None:
        hint = f" {_MODELS_HINT}" if error.kind is ErrorKind.MODEL_LOAD else ""
        if error.kind is ErrorKind.MODEL_LOAD:
            self._last_load_notice = error.message
        self.chat.add_notice(error.message + hint, "warning" if error.kind is ErrorKind.SETTINGS else "error")

    def _models(self) -> ModelsBridge:
        """The models thread (downloads, cache checks): made when first needed."""
        if self.models_bridge is None:
            self.models_bridge = ModelsBridge(self.paths, parent=self)
            self.models_bridge.checked.connect(self._model_checked)
            self.models_bridge.download_finished.connect(self._model_downloaded)
        return self.models_bridge

    def _check_missing_model(self, error: ErrorEvent) -> bool:
        """A speech model, or the chat model at start, failed to load: is it simply not downloaded?
        The models thread looks in the cache (``_model_checked`` answers); True: the error waits."""
        speech = error.kind is ErrorKind.SPEECH
        if speech and self._speech_model_offered():
            self._say_speech_model_missing()  # said already in the chat, with the download offered
            return True
        chat_model = (error.kind is ErrorKind.MODEL_LOAD and self.settings.backend == "local"
                      and self.bridge.engine.backend is None and not self._offered(self._chat_offer))
        if not (speech or chat_model):
            return False
        model = (self.settings.asr_model if speech else self.settings.model).strip()
        if model and looks_like_path(model):
            return False  # a folder: nothing to download, the error says what is wrong with it
        if speech in self._pending_checks:
            return True  # the same failure again while the cache is looked at: said once
        self._pending_checks[speech] = error
        self._models().check(model, self.settings.device, speech, self.settings.offline)
        return True

    @Slot(str, bool, object, bool, str)
    def _model_checked(self, model: str, ready: bool, size: int, speech: bool, why: str) -> None:
        from ui.panels.download_offer import DownloadOffer

        error = self._pending_checks.pop(speech, None)
        if error is None:
            return
        if ready or not why:  # downloaded, or the hub answers: it failed for another reason, said as it is
            self._show_error_notice(error)
            return
        then = ("Turn offline mode off (Models…, Ctrl+Shift+M), then Download." if "offline" in why else
                "Download tries again once the connection is back.")
        if speech:
            self._say_speech_model_missing(first=True)
            text = (f"The speech model {model} is not downloaded yet, and {why}: what you say cannot be "
                    f"understood until it is. {then}")
        else:
            self._last_load_notice = error.message
            text = (f"The model {model} is not downloaded yet, and {why}. {then} Or choose a downloaded "
                    "model or a folder with Models… (Ctrl+Shift+M).")
        notice = self.chat.add_notice(text, "warning")
        offer = DownloadOffer(self._models(), model, int(size or 0), speech=speech, offline=self.settings.offline)
        notice.layout().addWidget(offer)
        if speech:
            self._speech_offer, self._speech_offer_key = offer, (self.settings.asr_model, self.settings.device)
            offer.ready.connect(self._speech_model_downloaded)
        else:
            self._chat_offer = offer
            offer.ready.connect(self._chat_model_downloaded)

    def _speech_model_offered(self) -> bool:
        """The chat offers the download of the speech model these settings use (still missing)."""
        return self._offered(self._speech_offer) and self._speech_offer_key == (self.settings.asr_model,
                                                                                 self.settings.device)

    def _offered(self, offer) -> bool:
        """``offer`` is still in the chat (New chat clears the notices, offers with them)."""
        return offer is not None and any(offer in notice.findChildren(type(offer)) for notice in self.chat.notices)

    def _say_speech_model_missing(self, first: bool = False) -> None:
        self.mic_panel.show_notice("The speech model is not downloaded yet: Download is in the chat." if first else
                                   "Not understood: the speech model is not downloaded yet (Download is in the chat).")

    @Slot(str)
    def _speech_model_downloaded(self, model: str) -> None:
        self._speech_offer = None
        self.mic_panel.show_notice(f"{model} is downloaded: listening.")
        if self.bridge.listener is None:
            self.set_listening(True)  # the recognizer loads from the cache now

    @Slot(str)
    def _chat_model_downloaded(self, model: str) -> None:
        self._chat_offer = None
        if self.settings.backend == "local" and self.settings.model == model and self.bridge.engine.backend is None:
            self.bridge.load()
