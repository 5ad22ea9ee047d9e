"""Markdown for the conversation view: Qt rich text, and replies cut into prose and code blocks.

A reply is shown as a column of pieces: prose (one ``QTextDocument`` each) and fenced
code blocks (their own widget, which scrolls sideways and has a Copy button).
``split_markdown`` makes that cut; it is plain text work and cheap enough to run on
every streamed update.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from PySide6.QtGui import QColor, QFont, QTextCursor, QTextDocument, QTextOption

from ui import theme

_MD = QTextDocument.MarkdownFeature
MARKDOWN_FEATURES = _MD(_MD.MarkdownDialectGitHub.value | _MD.MarkdownNoHTML.value)  # raw HTML stays text

# A fence: three or more backticks or tildes at the start of a line (after indentation,
# which a fence inside a list item has).  A backtick fence's info string has no backtick.
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
# A table's delimiter row, under its header row: | --- | :---: | ---: |
_TABLE_RULE = re.compile(r"^ {0,3}\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


def markdown_to_html(text: str, font: QFont | None = None) -> str:
    """GitHub-flavoured markdown to Qt rich text; raw HTML in the text stays text.

    Code (inline and blocks) comes out in the monospace family; blocks get a
    shaded background.
    """
    doc = QTextDocument()
    if font is not None:
        doc.setDefaultFont(font)
    doc.setMarkdown(text, MARKDOWN_FEATURES)
    return doc.toHtml().replace("<pre style=\"", f"<pre style=\" background-color:{theme.code_background()};")


def set_markdown(doc: QTextDocument, text: str, break_words: bool = True) -> None:
    """Fill ``doc`` with ``text`` (markdown) so that nothing in it needs more width than it is given.

    Words longer than a line break anywhere (unless ``break_words`` is False: a table,
    which rather scrolls sideways than splits its words); code left in the prose (an
    indented block) wraps too, on a shaded background.  A table with more columns than
    fit is the one thing that can still need more width: its widget scrolls it sideways.
    """
    doc.setMarkdown(text, MARKDOWN_FEATURES)
    wrap = QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere if break_words else QTextOption.WrapMode.WordWrap
    if doc.defaultTextOption().wrapMode() != wrap:  # it stays across setMarkdown: set once
        option = QTextOption(doc.defaultTextOption())
        option.setWrapMode(wrap)
        doc.setDefaultTextOption(option)
    block = doc.begin()
    while block.isValid():
        fmt = block.blockFormat()
        if fmt.nonBreakableLines():
            fmt.setNonBreakableLines(False)
            fmt.setBackground(QColor(theme.code_background()))
            QTextCursor(block).setBlockFormat(fmt)
        block = block.next()


@dataclass(frozen=True)
class Segment:
    """A piece of a reply: ``kind`` "markdown" (prose), "table" (a markdown table), or "code"
    (a fenced block's code, without the fences)."""

    kind: str
    text: str
    language: str = ""
    closed: bool = True  # False for a code block still being written (no closing fence yet)


def split_markdown(text: str) -> list[Segment]:
    """Cut markdown into prose, tables and fenced code blocks, in order.

    An unclosed fence runs to the end (a reply still streaming).  A fence indented
    inside a list item counts too; its indentation is taken off the code's lines.
    A table runs from its header row to the next blank line.  Prose that is only
    white space is left out.
    """
    segments: list[Segment] = []
    prose: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None or (match["fence"][0] == "`" and "`" in match["info"]):
            if _starts_table(lines, i):
                _flush(prose, segments)
                end = i + 2
                while end < len(lines) and lines[end].strip() and not _FENCE.match(lines[end]):
                    end += 1
                segments.append(Segment("table", "\n".join(lines[i:end])))
                i = end
                continue
            prose.append(lines[i])
            i += 1
            continue
        _flush(prose, segments)
        indent = len(match["indent"].expandtabs(4))
        fence = match["fence"]
        code: list[str] = []
        i += 1
        closed = False
        while i < len(lines):
            line = lines[i]
            stripped = line.lstrip(" \t")
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]).strip():
                closed = True
                i += 1
                break
            code.append(_dedent(line, indent))
            i += 1
        segments.append(Segment("code", "\n".join(code), match["info"].strip().split(" ")[0], closed))
    _flush(prose, segments)
    return segments


def _starts_table(lines: list[str], i: int) -> bool:
    header = lines[i]
    return (
        "|" in header
        and len(header) - len(header.lstrip(" ")) <= 3
        and i + 1 < len(lines)
        and "-" in lines[i + 1]
        and _TABLE_RULE.match(lines[i + 1]) is not None
        and ("|" in lines[i + 1] or header.strip().startswith("|"))
    )


def _flush(prose: list[str], segments: list[Segment]) -> None:
    text = "\n".join(prose)
    prose.clear()
    if text.strip():
        segments.append(Segment("markdown", text))


def _dedent(line: str, indent: int) -> str:
    """``line`` with up to ``indent`` columns of leading white space removed."""
    removed = 0
    for position, char in enumerate(line):
        if removed >= indent or char not in " \t":
            return line[position:]
        removed += 4 - removed % 4 if char == "\t" else 1
    return ""
