"""The camera's part in a question: which recent frames go with it (attention fusion), and
what is in view (named from the user's labels by the shared image search model)."""

from __future__ import annotations

import logging

from assistant.encoders.shared import SharedEncoder
from assistant.errors import AssistantError
from assistant.events import ErrorEvent, ErrorKind, FramesChosen, UserTurn
from assistant.settings import Settings

log = logging.getLogger(__name__)


class CameraContext:
    """Frame selection and view labels for a question (a part of ``Engine``)."""

    settings: Settings
    encoder: SharedEncoder
    encoder_loads_on_use: bool
    _selector: object | None
    _selector_key: tuple | None
    _labeler: tuple | None

    def _select_frames(self, turn: UserTurn) -> tuple:
        from assistant.fusion.attention import FrameSelector
        from assistant.fusion.relevance import ClipRelevance

        settings = self.settings
        encoder = self._frame_encoder()
        key = (settings.camera_frames, settings.attention_temperature, id(encoder) if encoder else None)
        if self._selector is None or self._selector_key != key:
            relevance = ClipRelevance(encoder) if encoder is not None else None
            self._selector = FrameSelector(settings.camera_frames, settings.attention_temperature, relevance=relevance)
            self._selector_key = key
        result = self._selector.select(turn.frames, turn.text)
        chosen = tuple(result.chosen)
        self._emit(FramesChosen(turn.id, chosen, len(turn.frames)))
        return chosen

    def _labels_for(self, chosen: tuple) -> list[tuple[str, float]]:
        """What is in view in the question's main frame (the one with the most weight), named
        from the user's labels, when the settings say to send it; [] otherwise or when the
        image search model is not ready (a reply never waits for it)."""
        if not self.settings.labels_with_question or not chosen:
            return []
        from assistant.fusion.view_labels import ViewLabeler
        from assistant.settings import parse_labels

        encoder = self._frame_encoder()
        if encoder is None:
            return []
        key = (id(encoder), self.settings.view_label_list)
        if self._labeler is None or self._labeler[0] != key:
            self._labeler = (key, ViewLabeler(encoder, parse_labels(self.settings.view_label_list)))
        main = max(chosen, key=lambda c: c.weight)
        try:
            return self._labeler[1].label(main.frame.image)
        except Exception:  # noqa: BLE001 - context is a bonus: the question goes without it
            log.exception("view labels failed")
            return []

    def _frame_encoder(self):
        """The shared image search model for frame relevance, if it is on and can be had
        without waiting for a download (None: frames are chosen without the question)."""
        encoder = self.encoder.get()
        if encoder is not None or not self.encoder_loads_on_use or not self.encoder.choice.on:
            return encoder
        if self.encoder.failure() is not None or not self.encoder.is_downloaded():
            return None  # not downloaded: the search panel offers it; a failure was said once
        try:
            return self.encoder.load(download=False)
        except AssistantError as exc:
            self._emit(ErrorEvent(f"{exc} Frames are chosen by sharpness, novelty and recency.", ErrorKind.MODEL_LOAD))
            return None
