"""Choosing: the Settings dialog, the Models page, and applying (and saving) settings,
including taking the model in use back when a switch to another failed.

A part of ``MainWindow`` (``ui/main_window.py``), which it is mixed into: it uses the
window's widgets and bridges as attributes."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Slot

from assistant.events import ModelKept
from assistant.settings import Settings, load_settings, save_settings

from ui import theme
from ui.dialogs.settings import SettingsDialog
from ui.window.view_labels import follow_settings as follow_view_labels


class SettingsChoices:
    @Slot()
    def open_settings(self, page: str = "") -> None:
        """The Settings dialog (modal), on the tab called ``page`` when one is named."""
        voices = self.bridge.voice.voices if self.bridge.voice is not None else []
        dialog = SettingsDialog(self.settings, self, voices=voices)
        if page:
            dialog.show_page(page)
        if dialog.exec() != SettingsDialog.DialogCode.Accepted:
            return
        settings, key = dialog.result_settings(), dialog.api_key_entered()
        if key is not None:  # to the keyring (never the settings file), before the reload
            self.bridge.save_api_key(settings.base_url, key)
        self.apply_settings(settings, reload=key is not None and settings.backend == "openai")
        if dialog.wants_models_page:  # "Choose model…": the model is chosen on the Models page
            self.open_models()

    @Slot()
    def open_models(self) -> None:
        """The Models page (one, non-modal: a download goes on while the user chats)."""
        from ui.dialogs.models import ModelsPage

        if self.models_page is None:
            self.models_page = ModelsPage(self.settings, self.bridge, self._models(), self)
            self.models_page.settings_chosen.connect(self.apply_settings)
            self.models_page.server_settings_requested.connect(lambda: self.open_settings("Server"))
        else:
            self.models_page.set_settings(self.settings)
            self.models_bridge.refresh()
        self.models_page.show()
        self.models_page.raise_()
        self.models_page.activateWindow()

    def apply_settings(self, settings: Settings, reload: bool = False) -> None:
        """Use ``settings`` now, and save what the user changed."""
        changed = self._take_settings(settings)
        self.bridge.apply_settings(settings, reload)
        # What another place (the Settings dialog) changed shows here too.
        if "theme" in changed:
            theme.apply(settings.theme)
        if "mic" in changed:
            self.mic_panel.set_source(settings.mic)
        if "hands_free" in changed and self.mic_panel.hands_free.isChecked() != settings.hands_free:
            self.mic_panel.hands_free.setChecked(settings.hands_free)  # toggled → set_hands_free: listens
        if "mirror_camera" in changed:
            self.camera_panel.mirror.setChecked(settings.mirror_camera)
        if "camera" in changed and self.camera_panel.source.currentText().strip() != settings.camera:
            self.camera_panel.source.setCurrentText(settings.camera)
            self.camera_panel.restart()
        follow_view_labels(self, settings, changed)  # "What's in view" (ui/window/view_labels.py)

    def _take_settings(self, settings: Settings) -> dict:
        """Make ``settings`` the window's and save the fields that changed (returned).

        Only the changed fields are written over the saved file, so a command-line
        override of this session (``--model`` …) is never saved by accident.
        """
        changed = {
            f.name: getattr(settings, f.name)
            for f in dataclasses.fields(Settings)
            if f.name != "extra" and getattr(settings, f.name) != getattr(self.settings, f.name)
        }
        model_choices_changed = (settings.generator_key(), settings.offline) != (
            self.settings.generator_key(),
            self.settings.offline,
        )
        self.settings = settings
        self.speak_action.setChecked(settings.speak_replies and self.bridge.voice is not None)
        self.mic_panel.set_wake_word(settings.wake_word)
        self.chat.set_show_figures(settings.show_reply_figures)
        self.figures_action.setChecked(settings.show_reply_figures)
        if self.persist_settings and changed:
            try:
                save_settings(self.paths, load_settings(self.paths).settings.replace(**changed))
            except OSError as exc:
                self.chat.add_notice(f"Settings could not be saved: {exc.strerror or exc}", "error")
        if self.models_page is not None and model_choices_changed:
            self.models_page.set_settings(settings)
        return changed

    @Slot(object)
    def on_model_kept(self, event: ModelKept) -> None:
        """A switch to another model failed and the model in use stays: the window shows and
        saves it again as the choice (the message came as an error, or says it was cancelled)."""
        kept = self.settings.replace(**dict(event.fields))
        self.bridge.settings_kept(kept)
        self._take_settings(kept)
