"""Log observers for `twistd --logger`: JSON lines for log shippers.

    twistd --nodaemon --logger recsvc.logs.json_lines recsvc --config FILE

(--nodaemon: a daemon's standard output is /dev/null.)

Each event is one line of JSON on standard output: ``time`` (ISO 8601, UTC,
to the millisecond), ``level`` (``debug``, ``info``, ``warn``, ``error``,
``critical``), ``namespace``, ``message`` (the event as the text log shows
it), ``traceback`` for a failure, and the event's own keys as plain JSON
values, such as ``recordingId``, ``device``, ``peer`` and ``reason``, which
recsvc keeps stable. Twisted's own ``log_*`` bookkeeping is left out.

Client text (a phone's id, device, numbers, reason; an HTTP path) never
reaches a log raw: `Logger`, which every recsvc module logs through, escapes
control characters in an event's text values before any observer formats
them (twistd's text log, these JSON lines, an embedding application's), and
these JSON lines escape the text of other events (Twisted's own) as well.
"""

from __future__ import annotations

import json
import math
import sys
from typing import IO, Any, Mapping

import twisted.logger
from twisted.logger import FileLogObserver, LogLevel, formatEvent

from recsvc.summary import iso_utc

# The fields every line has (with "traceback" for failures). An event key
# of the same name is kept as "event_<key>".
LINE_FIELDS = ("time", "level", "namespace", "message", "traceback")
# What twisted.python.log (the legacy API, still used by twistd itself and
# parts of Twisted) adds to its events: the line's own fields say it again.
_LEGACY_KEYS = frozenset({"message", "format", "time", "system", "isError", "failure", "why",
                          "printed"})
_LEVELS = frozenset(LogLevel.iterconstants())
# Nested values deeper than this are given as text.
_MAX_DEPTH = 8


def escaped(text: str) -> str:
    """``text`` with each character that is not printable (control
    characters such as CR, LF, tab, ESC and NUL; DEL, C1 controls, line and
    paragraph separators, invisible format characters) written as Python
    writes it in a literal: ``\\r``, ``\\n``, ``\\x1b``, ``\\x00``, ``\\u2028``.
    Printable text (``José``, ``张三``) is kept as it is, and returned itself.
    A backslash is kept too, so that escaping twice changes nothing."""
    if text.isprintable():  # the common case, at C speed
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def escaped_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` (an event's, or a log call's keywords) with its text
    values escaped; Twisted's ``log_*`` keys (the format, the failure) as
    they are. ``fields`` itself when nothing needs escaping."""
    unsafe = [key for key, value in fields.items()
              if isinstance(value, str) and not value.isprintable()
              and not str(key).startswith("log_")]
    if not unsafe:
        return fields
    safe = dict(fields)
    for key in unsafe:
        safe[key] = escaped(fields[key])
    return safe


class Logger(twisted.logger.Logger):
    """twisted.logger.Logger whose events carry their text values escaped
    (see `escaped`): what a client sent can neither break a line of the log,
    forge one, nor reach a terminal as an escape sequence, whichever observer
    writes it. The format (recsvc's own text) and a failure's traceback are
    left as they are. Every recsvc module logs through this class."""

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        super().emit(level, format, **escaped_fields(kwargs))


def json_lines(out: IO[str] | None = None) -> FileLogObserver:
    """An observer writing each event as one line of JSON (see the module's
    docstring) to ``out``, by default standard output."""
    return FileLogObserver(sys.stdout if out is None else out, event_as_json_line)


def event_as_json_line(event: Mapping[str, Any]) -> str:
    """One event as a line of JSON, newline included. Never raises: an
    event that cannot be rendered still gives a line saying so."""
    try:
        return json.dumps(event_as_json(event), ensure_ascii=True, allow_nan=False) + "\n"
    except Exception as error:  # a broken __str__, an int too long for text: still one line
        line = {"time": _time_of(event), "level": "error", "namespace": "recsvc.logs",
                "message": f"an event could not be written as JSON: {error!r}"}
        return json.dumps(line, ensure_ascii=True) + "\n"


def event_as_json(event: Mapping[str, Any]) -> dict[str, Any]:
    """What a line of JSON says of one event: its fields and plain values."""
    legacy = event.get("log_namespace") == "log_legacy"
    level = event.get("log_level")
    line: dict[str, Any] = {
        "time": _time_of(event),
        "level": level.name if level in _LEVELS else "info",
        "namespace": str(event.get("log_namespace", "")),
    }
    failure = event.get("log_failure")
    if legacy and failure is None and event.get("isError") and event.get("failure") is not None:
        # log.err(): log_text holds "why" and the traceback; they go apart here.
        failure = event["failure"]
        line["message"] = escaped(str(event.get("why") or "Unhandled Error"))
    else:
        line["message"] = escaped(formatEvent(dict(event)))
    if failure is not None:
        # Its lines are kept; an exception's message within may hold client text.
        line["traceback"] = "\n".join(map(escaped, failure.getTraceback().split("\n")))
    for key, value in event.items():
        if not isinstance(key, str) or key.startswith("log_") or (legacy and key in _LEGACY_KEYS):
            continue
        line[f"event_{key}" if key in LINE_FIELDS else key] = plain(value)
    return line


def _time_of(event: Mapping[str, Any]) -> str | None:
    seconds = event.get("log_time")
    if isinstance(seconds, (int, float)) and math.isfinite(seconds):
        try:
            return iso_utc(seconds)
        except (OverflowError, OSError, ValueError):  # beyond the platform's time_t
            return None
    return None


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON can hold it: strings (escaped), finite numbers, true/false,
    null, lists and objects of them; anything else (bytes, addresses,
    exceptions, infinities) as its text."""
    if isinstance(value, str):
        return escaped(value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth < _MAX_DEPTH:
        if isinstance(value, (list, tuple, set, frozenset)):
            return [plain(item, depth + 1) for item in value]
        if isinstance(value, Mapping):
            return {str(key): plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, bytes):
        return repr(value)
    return escaped(str(value))
