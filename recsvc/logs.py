"""Log observers for `twistd --logger`: JSON lines for log shippers.

    twistd --nodaemon --logger recsvc.logs.json_lines recsvc --config FILE

Each event is one line of JSON on standard output (twisted.logger's own
JSON form: ``log_format``, ``log_level``, ``log_namespace``, ``log_time``
and the event's keys, such as ``recordingId``, ``device``, ``peer`` and
``reason``, which recsvc keeps stable).
"""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import FileLogObserver, jsonFileLogObserver


def json_lines(out: IO[str] | None = None) -> FileLogObserver:
    """An observer writing each event as a line of JSON (no record
    separator: one object a line, as log shippers read them)."""
    return jsonFileLogObserver(sys.stdout if out is None else out, recordSeparator="")
