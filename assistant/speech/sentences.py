"""Cutting a streamed markdown reply into speakable sentences.

Sentences are found with pysbd (rule-based sentence boundary detection that
knows abbreviations, decimals, initials and CJK punctuation).  A sentence is
handed out as soon as the next one has started, so speech can begin while the
rest of the reply is still being generated.  The very first phrase of a reply
can go sooner (``first_phrase_words``): at a clause boundary (a comma, colon,
semicolon or dash followed by a space) once it has a few words, so the voice
starts while the first sentence is still being written; the rest of that
sentence follows as usual.  Markdown is stripped; code blocks
are announced once instead of read; URLs are not spelled out; emoji are dropped.
"""

from __future__ import annotations

import re

import pysbd

CODE_BLOCK_PHRASE = "Code block."
LINK_PHRASE = "link"

_FENCE = re.compile(r"^\s*(```|~~~)")
_BOUNDARY_CHARS = set(".!?;:…。！？；\n")
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
_CJK_STOP = re.compile(r"(?<=[。！？])")
_CLAUSE_END = re.compile(r"[,;:—–](?=\s)")
_MARKUP = set("*_`[]<>|#~")  # a phrase cut from a line whose markup is not closed yet waits

_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images: their alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links: their text
    (re.compile(r"<?\b(?:https?|ftp)://[^\s>)]+>?"), LINK_PHRASE),  # bare URLs
    (re.compile(r"\bwww\.[^\s)]+"), LINK_PHRASE),
    (re.compile(r"`([^`]*)`"), r"\1"),  # inline code: its text
    (re.compile(r"</?[A-Za-z][^>]*>"), ""),  # HTML tags
    (re.compile(r"^\s{0,3}#{1,6}\s+"), ""),  # headings
    (re.compile(r"^\s*>+\s?"), ""),  # block quotes
    (re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+(?:\[[ xX]\]\s+)?"), ""),  # list markers, task boxes
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),  # bold
    (re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"), r"\1"),  # italic *x*
    (re.compile(r"(?<![\w_])_(?!\s)(.+?)(?<!\s)_(?![\w_])"), r"\1"),  # italic _x_
    (re.compile(r"~~(.+?)~~"), r"\1"),  # strike-through
    (re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$"), ""),  # table rules
    (re.compile(r"^\s*([-*_])\s*(\1\s*){2,}$"), ""),  # horizontal rules
]
# Pictographs, dingbats, flags, variation selectors and joiners: not for reading aloud.
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U00002600-\U000027bf\U0001f1e6-\U0001f1ff\U0000fe0e\U0000fe0f\U0000200d\U000020e3\U00002b00-\U00002bff]"
)


def speakable(line: str) -> str:
    """One line of markdown as plain words."""
    text = line
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    if "|" in text:  # a table row: its cells, separated by pauses
        cells = [c.strip() for c in text.strip().strip("|").split("|")]
        text = ", ".join(c for c in cells if c)
    text = _EMOJI.sub("", text)
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+([.,!?;:])", r"\1", text)


def _worth_saying(sentence: str) -> bool:
    return any(ch.isalnum() for ch in sentence)


class SentenceSplitter:
    """Feed it text as it streams; it returns the sentences that are complete."""

    def __init__(self, language: str = "en", first_phrase_words: int = 0) -> None:
        """``first_phrase_words``: hand out the reply's first phrase at a clause boundary
        once it has this many words (0: whole sentences only)."""
        self.first_phrase_words = first_phrase_words
        self._said_any = False  # something of this reply was handed out
        self._said_prefix = ""  # the start of the line's next sentence, handed out already
        self._segmenter = pysbd.Segmenter(language=language, clean=False)
        self._line = ""  # the current, unfinished line
        self._emitted = 0  # sentences of the current line already handed out
        self._in_code = False
        self._check_next = False  # the line ended in punctuation: a sentence may have ended

    def _segments(self, text: str) -> list[str]:
        if not text:
            return []
        if _CJK.search(text):  # pysbd's English rules do not cut at 。！？
            pieces = [p for p in _CJK_STOP.split(text) if p]
            return [s for p in pieces for s in self._segmenter.segment(p)]
        return self._segmenter.segment(text)

    def _finish_line(self, line: str) -> list[str]:
        emitted, self._emitted = self._emitted, 0
        if _FENCE.match(line):
            self._in_code = not self._in_code
            return [CODE_BLOCK_PHRASE] if self._in_code else []
        if self._in_code:
            return []
        return self._handed_out([s.strip() for s in self._segments(speakable(line))[emitted:]])

    def _handed_out(self, sentences: list[str]) -> list[str]:
        """The sentences to hand out, less the first phrase where it was said already."""
        if sentences and self._said_prefix:
            prefix, self._said_prefix = self._said_prefix, ""
            if sentences[0].startswith(prefix):
                sentences[0] = sentences[0][len(prefix):].strip()
        out = [s for s in sentences if _worth_saying(s)]
        self._said_any = self._said_any or bool(out)
        return out

    def _first_phrase(self) -> list[str]:
        """The reply's first phrase, when the unfinished first sentence has reached a clause
        boundary after ``first_phrase_words`` words."""
        segments = self._segments(speakable(self._line))
        if len(segments) <= self._emitted:
            return []
        sentence = segments[self._emitted].lstrip()
        for match in _CLAUSE_END.finditer(sentence):
            phrase = sentence[: match.end()]
            if len(phrase.split()) >= self.first_phrase_words:
                if _MARKUP & set(phrase) or not _worth_saying(phrase):
                    return []
                self._said_prefix, self._said_any = phrase, True
                return [phrase]
        return []

    def feed(self, text: str) -> list[str]:
        out: list[str] = []
        self._line += text
        while "\n" in self._line:
            line, self._line = self._line.split("\n", 1)
            out += self._finish_line(line)
        if self._in_code or _FENCE.match(self._line):
            return out
        if self.first_phrase_words and not self._said_any and not self._said_prefix and " " in text:
            out += self._first_phrase()
        if not (self._check_next or _BOUNDARY_CHARS & set(text)):
            return out  # cheap exit: no sentence can have ended since the last look
        self._check_next = self._line.rstrip()[-1:] in _BOUNDARY_CHARS
        segments = self._segments(speakable(self._line))
        if len(segments) > self._emitted + 1:  # all but the last are complete
            out += self._handed_out([s.strip() for s in segments[self._emitted : -1]])
            self._emitted = len(segments) - 1
        return out

    def flush(self) -> list[str]:
        """The rest, at the end of the reply."""
        line, self._line = self._line, ""
        out = self._finish_line(line) if line else []
        self._in_code = False
        self._emitted = 0
        self._said_any, self._said_prefix = False, ""  # the next reply starts afresh
        return out
