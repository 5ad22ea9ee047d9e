"""The camera panel's "What's in view", wired to the window: the shared image search model,
the settings it follows (``view_labels``, ``view_label_list``) and the box's choice saved.

Called once from the window's construction (``connect_view_labels``); ``follow_settings``
takes what another place (the Settings dialog) changed."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from assistant.settings import Settings, parse_labels


def connect_view_labels(window) -> None:
    panel = window.camera_panel
    view = panel.view
    view.box.blockSignals(True)
    view.box.setChecked(window.settings.view_labels)
    view.box.blockSignals(False)
    view.set_labels(parse_labels(window.settings.view_label_list))
    view.set_encoder(window.bridge.engine.encoder)
    view.box.toggled.connect(
        lambda on: on != window.settings.view_labels
        and window.apply_settings(window.settings.replace(view_labels=on)))
    QWidget.setTabOrder(panel.include, view.box)  # Tab: after "Send frames", before the microphone
    QWidget.setTabOrder(view.box, window.mic_panel.toggle)


def follow_settings(window, settings: Settings, changed: dict) -> None:
    view = window.camera_panel.view
    if "view_labels" in changed and view.box.isChecked() != settings.view_labels:
        view.box.setChecked(settings.view_labels)
    if "view_label_list" in changed:
        view.set_labels(parse_labels(settings.view_label_list))
    if {"search_model", "device", "offline"} & set(changed):
        view.set_encoder(view.encoder)  # another model: the old one's labels or problem go
