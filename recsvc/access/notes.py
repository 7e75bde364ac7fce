"""Notes and tags on a recording: what a supervisor writes of a call ("asked
for a refund", tags ``dispute refund``), kept in the index database
(INotes) beside the recordings, found by a search's ``note`` (text in a
note or its tags) and ``tag`` (one tag exactly). A note is on one file of
the recording (its first that the writer reaches), by that file's path:
phones choose recording ids, and two phones' calls may share one, so an
id alone would show one team's notes with another's call. A note is
added, never changed: notes are part of the record, and each is in the
audit trail. An erasure takes a recording's notes with it."""

from __future__ import annotations

import re
from typing import Any, Sequence

import attrs
from zope.interface import Interface

# The longest note, in characters; the most tags on one note.
MAX_TEXT = 2000
MAX_TAGS = 10
# A tag: a word of lower-case letters, digits, "-" and "_" (as typed, in
# lower case), at most 32 characters.
_TAG = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


@attrs.frozen
class Note:
    """A note on the recording ``recording_id``, on its file at ``path``
    (as the index keys it): who wrote it and when (ISO UTC), its text and
    its tags."""

    recording_id: str
    path: str
    written_at: str
    author: str
    text: str
    tags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"recording_id": self.recording_id, "file": self.path.rsplit("/", 1)[-1],
                "written_at": self.written_at,
                "author": self.author, "text": self.text, "tags": list(self.tags)}


COLUMNS = ("recording_id", "path", "written_at", "author", "text", "tags")


def check_text(text: Any) -> str:
    """A note's text: printable lines (new lines and tabs allowed), at most
    MAX_TEXT characters; it may be empty only where tags are given.
    Raises ValueError naming ``text``."""
    if not isinstance(text, str):
        raise ValueError("text: not a text")
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise ValueError(f"text: {len(text)} characters, at most {MAX_TEXT}")
    if not all(character.isprintable() or character in "\n\t" for character in text):
        raise ValueError("text: only printable characters, new lines and tabs")
    return text


def check_tags(tags: Any) -> tuple[str, ...]:
    """Tags as a note keeps them: lower case, each once, in the order
    given. ``tags`` is a list of words, or one text of words separated by
    spaces or commas. Raises ValueError naming ``tags``."""
    if isinstance(tags, str):
        tags = [word for word in re.split(r"[\s,]+", tags) if word]
    if not isinstance(tags, (list, tuple)) or not all(isinstance(tag, str) for tag in tags):
        raise ValueError("tags: not a list of words")
    kept: list[str] = []
    for tag in tags:
        tag = tag.strip().lower()
        if not _TAG.fullmatch(tag):
            raise ValueError(f"tags: {tag[:40]!r} is not a tag (letters, digits, - and _, "
                             "at most 32, beginning with a letter or digit)")
        if tag not in kept:
            kept.append(tag)
    if len(kept) > MAX_TAGS:
        raise ValueError(f"tags: {len(kept)} tags, at most {MAX_TAGS}")
    return tuple(kept)


def check_tag(tag: str) -> str:
    """One tag to search for (see check_tags). Raises ValueError naming ``tag``."""
    try:
        (only,) = check_tags([tag])
    except ValueError as error:
        raise ValueError(str(error).replace("tags:", "tag:", 1)) from None
    return only


def note_of(recording_id: str, path: str, written_at: str, author: str, text: Any,
            tags: Any) -> Note:
    """A note checked (see check_text, check_tags): text or tags, or both.
    Raises ValueError."""
    checked = check_text(text)
    kept = check_tags(tags if tags is not None else [])
    if not checked and not kept:
        raise ValueError("text: a note needs a text or tags")
    return Note(recording_id, path, written_at, author, checked, kept)


def tags_column(tags: Sequence[str]) -> str:
    """Tags as the database keeps them: between spaces (" a b "), so that
    one is found whole (LIKE '% a %')."""
    return f" {' '.join(tags)} " if tags else ""


def row_of(note: Note) -> tuple[str, ...]:
    return (note.recording_id, note.path, note.written_at, note.author, note.text,
            tags_column(note.tags))


def note_of_row(row: Sequence[str]) -> Note:
    recording_id, path, written_at, author, text, tags = row
    return Note(recording_id, path, written_at, author, text, tuple(tags.split()))


class INotes(Interface):
    """The notes an index database keeps. Every method blocks."""

    def add_note(note: Note, audit: Any = None) -> None:
        """Keep ``note``, with ``audit``'s row in the same transaction."""

    def notes_of(paths: Sequence[str]) -> list[Note]:
        """The notes on these files (a recording's, that a user reaches),
        the oldest first."""

    def forget_notes(paths: Sequence[str]) -> int:
        """Delete the notes on these files (an erasure); how many."""
