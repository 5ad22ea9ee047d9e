"""Saved conversations: reopening one from the sidebar, search (by words, and by meaning
and pictures in the search thread), export and import; and the versions of a message:
regenerate a reply, edit a question, ‹ n/m ›.

A part of ``MainWindow`` (``ui/main_window.py``), which it is mixed into: it uses the
window's widgets and bridges as attributes."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFileDialog, QPushButton

from assistant.events import (
    ConversationOpened,
    ImageInput,
    MessageVersions,
    UserTurn,
    next_turn_id,
)
from assistant.models.hub import human_bytes, offline_from_environment
from assistant.settings import APP_TITLE

from ui.panels.composer import readable_image
from ui.workers.search import SearchAnswer, SearchState, download_size


class ConversationActions:
    search_worker = None  # SearchWorker: the image search model, the index, searches by meaning
    _search_phase = ""
    _search_ready_once = False  # meaning search has finished indexing once for this model
    _search_offer_model: str | None = None  # the search model the sidebar offers to download

    @Slot(object)
    def on_conversation_opened(self, event: ConversationOpened) -> None:
        """Show a saved conversation; the engine already gave the model its history."""
        self.chat.clear()
        for message in event.messages:
            turn_id = message.turn_id  # restored messages never collide with live turns
            if message.role == "user":
                frames = message.meta.get("frames", [])  # camera frames are the last images
                split = len(message.images) - len(frames)
                images = [(image.path.name, QImage(str(image.path))) for image in message.images[:split]]
                widget = self.chat.add_user(turn_id, message.text, images)
                if frames:
                    widget.add_frames([
                        (QImage(str(image.path)), float(f["t"]), float(f["weight"]))
                        for image, f in zip(message.images[split:], frames)
                    ])
            elif message.role == "assistant":
                widget = self.chat.add_assistant(turn_id)
                widget.set_text(message.text)
                if message.status == "stopped" and message.meta.get("interrupted"):
                    widget.finish("stopped", "Interrupted — the app closed while this was being written; "
                                             "the part written is kept.")
                elif message.status == "stopped":
                    widget.finish("stopped", "Stopped — the partial reply is kept.")
                elif message.status == "failed":
                    widget.finish("failed", message.meta.get("error", "This reply failed."))
                else:
                    widget.finish("done")
            if message.role in ("user", "assistant"):
                widget.set_versions(message.version, message.versions)
        self.chat.refresh_actions()
        self.setWindowTitle(f"{event.title} — {APP_TITLE}" if event.title else APP_TITLE)
        at, self._version_focus = self._version_focus, None
        if at is not None and at < len(self.chat.messages):  # ‹ › opened it: the keyboard stays there
            message = self.chat.messages[at]
            self.chat.ensureWidgetVisible(message, 0, 0)
            message.setFocus(Qt.FocusReason.OtherFocusReason)
        else:
            self.prompt.setFocus()

    @Slot(str)
    def search(self, query: str) -> None:
        """The sidebar's search: by meaning, pictures and words once the search model is ready
        (the search thread), by words alone until then (the history reader)."""
        if not query:
            self.bridge.list_conversations()
        elif self.search_worker is not None and self.search_worker.searchable:
            self.search_worker.search(query)
        else:
            self.bridge.search(query)

    @Slot(object)
    def on_search_answer(self, answer: SearchAnswer) -> None:
        if self.sidebar is None or answer.query != self.sidebar.search.text().strip():
            return  # an older query's
        if answer.results is None:  # meaning search could not answer: the words can
            self.bridge.search(answer.query)
        else:
            self.sidebar.show_results(answer.query, answer.results, answer.thumbnails)

    @Slot(object)
    def on_search_state(self, state: SearchState) -> None:
        """One quiet line in the sidebar: off, loading, indexing N of M, or the model's Download."""
        before, self._search_phase = self._search_phase, state.phase
        self._show_search_line()
        # The search shown was answered by words only, or over a partial index: ask it again
        # once meaning search can answer, and when the first indexing has ended (not after
        # every reply's: the results would move under the user's eyes).
        became = state.searchable and not SearchState(before).searchable
        first_ready = state.phase == "ready" and not self._search_ready_once
        if state.phase == "ready":
            self._search_ready_once = True
        elif not state.searchable:
            self._search_ready_once = False
        query = self.sidebar.search.text().strip() if self.sidebar is not None else ""
        if query and (became or first_ready):
            self.search(query)

    def _show_search_line(self) -> None:
        if self.sidebar is None or self.search_worker is None:
            return
        line, state = self.sidebar.search_line, self.search_worker.state
        if state.phase == "missing":
            if self._search_offer_model != state.model:
                self._offer_search_model(state.model)
            offline = self.settings.offline or offline_from_environment()
            tip = (f"{state.model} is not downloaded yet. Until it is, search finds words only."
                   + (" Offline mode is on: turn it off to download." if offline else ""))
            line.show_state(state.text, tip)
            return
        if line.offer is not None and not self._search_downloading():
            line.set_offer(None)
            self._search_offer_model = None
        if state.phase == "loading":
            line.show_state(state.text, f"Loading {state.model}", (0, 0))
        elif state.phase == "indexing" and state.total:
            line.show_state(state.text, "Pictures and messages are indexed in the background, newest first; "
                            "what is indexed is found already.", (state.done, state.total))
        elif state.phase == "failed":
            line.show_state(state.text, state.message, retry=bool(state.model))
        elif state.phase == "off" and self.sidebar.search.text().strip():
            line.show_state(state.text, "Choose an image search model in Settings… → Camera to search "
                            "by meaning and by what pictures show.")
        elif state.phase == "ready" and state.message:
            line.show_state(state.message)
        else:
            line.show_state("")

    def _offer_search_model(self, model: str) -> None:
        """The search model is not downloaded: one Download button (with its size) in the sidebar."""
        size = download_size(model)
        button = QPushButton(f"Download (≈ {human_bytes(size)})" if size else "Download")
        button.setObjectName("searchDownloadButton")
        button.setAccessibleName("Download the image search model")
        button.setToolTip(f"Download {model}" + (f" (≈ {human_bytes(size)})" if size else "")
                          + " into the app's model folder, to search by meaning and by what pictures show")
        button.clicked.connect(lambda: self.download_search_model(model))
        self._search_offer_model = model
        self.sidebar.search_line.set_offer(button)
        self._search_tab_order(button)

    @Slot()
    def download_search_model(self, model: str | None = None) -> None:
        """Download the search model (progress and Cancel in the sidebar); it loads when it is in."""
        from ui.panels.download_offer import DownloadOffer

        model = model or self.search_worker.state.model
        if not model or self.sidebar is None:
            return
        offer = DownloadOffer(self._models(), model, download_size(model), offline=self.settings.offline)
        offer.setObjectName("searchDownloadOffer")
        offer.download_button.setAccessibleName("Download the image search model")
        offer.cancel_button.setAccessibleName("Cancel the download of the image search model")
        offer.progress.setAccessibleName("Image search model download progress")
        offer.status.setWordWrap(True)
        self._search_offer_model = model
        self.sidebar.search_line.set_offer(offer)
        self._search_tab_order(offer.download_button, offer.cancel_button)
        offer.start()
        offer.cancel_button.setFocus()  # the button clicked went quiet: Cancel is one key away

    @Slot(str, str)
    def _model_downloaded(self, model: str, _folder: str) -> None:
        """A model arrived, downloaded from the sidebar or on the Models page: if it is the image
        search model and search waits for it, it loads now (and the sidebar's offer goes)."""
        worker = self.search_worker
        if worker is not None and worker.state.model == model and worker.state.phase in ("missing", "failed"):
            worker.retry()

    def _search_tab_order(self, *controls) -> None:
        """Tab goes from the search box to the sidebar line's buttons, then to the list."""
        chain = [self.sidebar.search, *controls, self.sidebar.list]
        for first, second in zip(chain, chain[1:]):
            self.setTabOrder(first, second)

    def _search_downloading(self) -> bool:
        return self.models_bridge is not None and self.models_bridge.downloading == self._search_offer_model

    @Slot(object)
    def use_found_picture(self, result) -> None:
        """"Use in this chat": a picture found by search goes with the next question."""
        path = str(result.image_path)
        problem = readable_image(path)
        if problem:
            self.chat.add_notice(problem, "error")
            return
        title = " ".join((result.conversation_title or "New chat").split())
        name = f"picture from “{title if len(title) <= 40 else title[:39] + '…'}”"
        preview = QImage(path)
        self.attachments.add(ImageInput(name=name, path=Path(path)), None if preview.isNull() else preview)
        self.prompt.setFocus()

    @Slot(int, str)
    def export_conversation(self, conversation_id: int, fmt: str) -> None:
        if fmt == "md":
            folder = QFileDialog.getExistingDirectory(self, "Export chat as Markdown into folder")
            if folder:
                self.bridge.export_conversation(conversation_id, "md", Path(folder))
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Export chat as JSON", "chat.json", "JSON (*.json)")
            if path:
                self.bridge.export_conversation(conversation_id, "json", Path(path))

    @Slot()
    def import_conversation(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a chat", "", "JSON (*.json)")
        if path:
            self.bridge.import_conversation(Path(path))

    @Slot(object)
    def on_versions(self, event: MessageVersions) -> None:
        message = self.chat.message(event.role, event.turn_id)
        if message is not None:
            message.set_versions(event.version, event.versions)

    @Slot(object)
    def regenerate(self, reply) -> None:
        """Answer the last question again; the reply shown now stays in the history (‹ ›)."""
        if self.bridge.busy or not self.chat.messages or reply is not self.chat.messages[-1]:
            return  # one reply at a time, and only the last one
        turn_id = next_turn_id()
        self.chat.remove(reply)
        self.chat.add_assistant(turn_id).setFocus(Qt.FocusReason.OtherFocusReason)  # the button went with it
        self.bridge.regenerate(reply.turn_id, turn_id)

    @Slot(object, str)
    def edit_question(self, question, text: str) -> None:
        """Send an edited question: everything after it is replaced by the new answer."""
        if self.bridge.busy or question not in self.chat.messages:
            return
        turn = UserTurn(text)
        old_turn_id = question.turn_id
        self.chat.remove_after(question)
        question.turn_id = turn.id  # the same widget (its images and frames stay) under the new turn
        question.set_text(turn.text)
        question.end_edit()
        self.chat.add_assistant(turn.id)
        self.prompt.setFocus()
        self.bridge.edit(old_turn_id, turn)

    @Slot(object, int)
    def show_version(self, message, step: int) -> None:
        """‹ or ›: show another version of an edited question or a regenerated reply."""
        if self.bridge.busy or message not in self.chat.messages:
            return
        self._version_focus = self.chat.messages.index(message)
        self.bridge.show_version(message.role, message.turn_id, step)
