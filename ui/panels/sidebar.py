"""The conversation sidebar: saved chats newest first, search (by words, and by meaning and
what pictures show when the image search model is ready), rename, delete, export."""

from __future__ import annotations

import time

from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QInputDialog,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ui.panels.message import plural
from ui.panels.search_results import ResultRow, SearchLine, result_text

ID_ROLE = Qt.ItemDataRole.UserRole
RESULT_ROLE = Qt.ItemDataRole.UserRole + 1  # a search result's SearchResult
MIN_WIDTH = 160


def when(timestamp: float) -> str:
    """A short, friendly time: 14:05 today, 'Mon 14:05' this week, else the date."""
    now = time.time()
    local = time.localtime(timestamp)
    if time.strftime("%Y%m%d", local) == time.strftime("%Y%m%d", time.localtime(now)):
        return time.strftime("%H:%M", local)
    if now - timestamp < 6 * 86400:
        return time.strftime("%a %H:%M", local)
    return time.strftime("%Y-%m-%d", local)


class Sidebar(QWidget):
    open_requested = Signal(int)
    rename_requested = Signal(int, str)
    delete_requested = Signal(int)
    export_requested = Signal(int, str)  # conversation id, "md" | "json"
    search_changed = Signal(str)  # debounced
    new_chat_requested = Signal()
    use_picture_requested = Signal(object)  # a SearchResult: attach its picture to the next question

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sidebar")
        self.setAccessibleName("Saved chats")
        self.setMinimumWidth(MIN_WIDTH)
        column = QVBoxLayout(self)
        column.setContentsMargins(6, 6, 0, 6)
        self.new_button = QPushButton("+ New chat")
        self.new_button.setObjectName("newChatButton")
        self.new_button.setAccessibleName("New chat")
        self.new_button.setToolTip("Start a new chat (Ctrl+N)")
        self.new_button.clicked.connect(self.new_chat_requested)
        column.addWidget(self.new_button)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search all chats…")
        self.search.setClearButtonEnabled(True)
        self.search.setAccessibleName("Search all chats")
        self.search.setToolTip("Find chats by their words; with the image search model, also by meaning "
                               "and by what their pictures show")
        column.addWidget(self.search)
        self.search_line = SearchLine()  # meaning search: off / loading / indexing N of M / Download
        column.addWidget(self.search_line)
        self.list = QListWidget()
        self.list.setObjectName("conversationList")
        self.list.setAccessibleName("Saved chats, newest first")
        self.list.setAccessibleDescription("Enter opens a chat; the context menu renames, exports or deletes it; "
                                           "on a picture found by search, Ctrl+Enter uses it in this chat")
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)  # a long title ends in "…" (its tooltip
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # has all of it)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.itemActivated.connect(self._open)
        self.list.itemClicked.connect(self._open)
        column.addWidget(self.list, 1)
        self.use_action = QAction("Use picture in this chat", self.list)
        self.use_action.setShortcut(QKeySequence("Ctrl+Return"))
        self.use_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self.use_action.setToolTip("Attach the picture found to your next question (Ctrl+Enter)")
        self.use_action.triggered.connect(self._use_current)
        self.list.addAction(self.use_action)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(lambda: self.search_changed.emit(self.search.text().strip()))
        self.search.textChanged.connect(lambda _t: self._debounce.start())
        self.titles: dict[int, str] = {}
        self.current_id: int | None = None
        self.showing_search = False

    def show_conversations(self, items, current_id: int | None) -> None:
        self.titles = {item.id: item.title or "New chat" for item in items}
        self.current_id = current_id
        if self.search.text().strip():
            return  # keep showing the search results; the titles are refreshed for later
        self.showing_search = False
        self.list.clear()
        for item in items:
            row = QListWidgetItem(f"{item.title or 'New chat'}\n{when(item.updated)} · {plural(item.message_count, 'message')}")
            row.setData(ID_ROLE, item.id)
            row.setToolTip(item.title)
            self.list.addItem(row)
            if item.id == current_id:
                row.setSelected(True)

    def show_search(self, query: str, hits) -> None:
        if query != self.search.text().strip():
            return  # an answer to an older query
        self.showing_search = bool(query)
        if not query:
            self.search_changed.emit("")  # back to the list
            return
        self.list.clear()
        if not hits:
            empty = QListWidgetItem(f"No message contains “{query}”.")
            empty.setFlags(Qt.ItemFlag.NoItemFlags)
            self.list.addItem(empty)
        for hit in hits:
            row = QListWidgetItem(f"{hit.conversation_title or 'New chat'}\n{hit.snippet}")
            row.setData(ID_ROLE, hit.conversation_id)
            self.list.addItem(row)

    def show_results(self, query: str, results, thumbnails: dict | None = None) -> None:
        """Results of the search by meaning, pictures and words (``SearchResult``s, best first),
        each with its small picture (``thumbnails``: image path -> QImage)."""
        if query != self.search.text().strip():
            return  # an answer to an older query
        if not query:
            self.show_search(query, ())
            return
        self.showing_search = True
        self.list.clear()
        if not results:
            empty = QListWidgetItem(f"Nothing found for “{query}”.")
            empty.setFlags(Qt.ItemFlag.NoItemFlags)
            self.list.addItem(empty)
            return
        thumbnails = thumbnails or {}
        for result in results:
            item = QListWidgetItem()
            item.setData(ID_ROLE, result.conversation_id)
            item.setData(RESULT_ROLE, result)
            said = result_text(result)
            item.setData(Qt.ItemDataRole.AccessibleTextRole, said)
            item.setToolTip(said)
            row = ResultRow(result, thumbnails.get(result.image_path))
            row.use_requested.connect(self.use_picture_requested)
            item.setSizeHint(row.sizeHint())
            self.list.addItem(item)
            self.list.setItemWidget(item, row)

    def result_rows(self) -> list[ResultRow]:
        """The search results shown, as rows (empty when the list shows chats)."""
        rows = [self.list.itemWidget(self.list.item(i)) for i in range(self.list.count())]
        return [row for row in rows if isinstance(row, ResultRow)]

    def _use_current(self) -> None:
        item = self.list.currentItem()
        result = item.data(RESULT_ROLE) if item is not None else None
        if result is not None and result.kind == "image" and result.image_path:
            self.use_picture_requested.emit(result)

    def _open(self, item: QListWidgetItem) -> None:
        conversation_id = item.data(ID_ROLE)
        if conversation_id is not None and conversation_id != self.current_id:
            self.open_requested.emit(int(conversation_id))

    def _menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        if item is None or item.data(ID_ROLE) is None:
            return
        conversation_id = int(item.data(ID_ROLE))
        menu = QMenu(self)
        result = item.data(RESULT_ROLE)
        if result is not None:  # a search result: open its chat, or use its picture here
            menu.addAction("Open chat", lambda: self._open(item))
            if result.kind == "image" and result.image_path:
                menu.addAction("Use picture in this chat", lambda: self.use_picture_requested.emit(result))
            menu.addSeparator()
        menu.addAction("Rename…", lambda: self.rename(conversation_id))
        menu.addAction("Export as Markdown…", lambda: self.export_requested.emit(conversation_id, "md"))
        menu.addAction("Export as JSON…", lambda: self.export_requested.emit(conversation_id, "json"))
        menu.addSeparator()
        menu.addAction("Delete…", lambda: self.delete(conversation_id))
        menu.exec(self.list.mapToGlobal(pos))

    def rename(self, conversation_id: int) -> None:
        title, ok = QInputDialog.getText(self, "Rename chat", "Title:", text=self.titles.get(conversation_id, ""))
        if ok and title.strip():
            self.rename_requested.emit(conversation_id, title.strip())

    def delete(self, conversation_id: int, confirm: bool = True) -> None:
        title = self.titles.get(conversation_id, "this chat")
        if confirm:
            answer = QMessageBox.question(
                self, "Delete chat", f"Delete “{title}” and everything in it? This cannot be undone."
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.delete_requested.emit(conversation_id)
